/* dsk_avx2.c - the AVX2 variants (to be written; until then the table keeps the references). */
#include "dsk_impl.h"

void dsk_ops_fill_avx2(dsk_ops_t *ops)
{
    (void)ops;
}
