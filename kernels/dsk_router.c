/* dsk_router.c - the MoE router (to be written by the kernels work). */
#include "dsk_impl.h"
