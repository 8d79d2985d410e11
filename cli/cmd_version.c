#include <stdio.h>

#include "cli_settings.h"
#include "dsinfer_commands.h"
#include "dsk.h"

int dsinfer_cmd_version(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    if (cli_kernel_options_env("dsinfer version") != 0)
        return 2;
    printf("dsinfer 0.1.0\nkernels: %s (cpu supports %s)\n", dsk_level_name(dsk_level_detect()),
           dsk_level_name(dsk_level_cpu()));
    return 0;
}
