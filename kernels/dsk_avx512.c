/* dsk_avx512.c - the AVX512 variants (to be written; until then the table keeps the references). */
#include "dsk_impl.h"

void dsk_ops_fill_avx512(dsk_ops_t *ops)
{
    (void)ops;
}
