/* dsg_schema_impl.h - the number grammars of dsg_schema_num.c, used by dsg_schema.c. */
#ifndef DSG_SCHEMA_IMPL_H
#define DSG_SCHEMA_IMPL_H

#include "dsg_impl.h"

/* ( the integers in [lo, hi] ) as grammar text; a missing bound means at most 16 digits. */
void dsg_schema_int_range(dsg_sbuf_t *b, int has_lo, int64_t lo, int has_hi, int64_t hi);
/* ( the decimal numbers between integer bounds ), exclusive where *_ex; the number of
 * alternatives (0: the range is empty). */
int dsg_schema_number_range(dsg_sbuf_t *b, int has_lo, int64_t lo, int lo_ex, int has_hi,
                            int64_t hi, int hi_ex);

#endif
