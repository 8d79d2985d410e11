#include <stdio.h>

#include "dsinfer_commands.h"
#include "dsk.h"

int dsinfer_cmd_version(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    printf("dsinfer 0.1.0\nkernels: %s (cpu supports %s)\n", dsk_level_name(dsk_level_detect()),
           dsk_level_name(dsk_level_cpu()));
    return 0;
}
