/* dsk_rope.c - YaRN RoPE (to be written by the kernels work). */
#include "dsk_impl.h"
