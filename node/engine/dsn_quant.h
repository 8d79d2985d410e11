/*
 * dsn_quant.h - re-quantization of a slice's projections at load (`--weight-format`).
 *
 * Every projection of the slice (dsn_weights_for_each_projection) whose stored dtype differs from
 * what the format asks is converted: each 128-row band is dequantized to f32 (the kernel table's
 * row_f32) and quantized into the new dtype (dsk_quantize_rows). The new copies live in one
 * anonymous mapping sized up front (one allocation, 64-byte aligned matrices) and written by the
 * pool's threads, so on a NUMA host their pages are first-touched by the threads that will read
 * them; the checkpoint pages of each converted band are released right after (MADV_DONTNEED) and
 * never read again, so the node's resident memory ends at what the format needs.
 *
 * int4 projections (but kv_b, which the engine multiplies transposed) are repacked as they are
 * written (dsk_q4l_pack: DSK_LAYOUT_Q4_L16, 16 rows interleaved per 32 inputs with their scales)
 * where the kernel table has kernels for that layout (dsk_ops_t.q4l: int8 activations at the
 * avx2 and avx512vnni levels); with DSINFER_ACT=f32 or below avx2 they keep the row layout.
 * Nothing changes on disk: the checkpoint is read as before and the layout is made in memory.
 */
#ifndef DSN_QUANT_H
#define DSN_QUANT_H

#include "dsk.h"
#include "dsn_weights.h"

/* The dtype `format` gives a projection stored as `stored` (AUTO: stored). */
dsk_dtype_t dsn_quant_dtype(dsn_weight_format_t format, dsk_dtype_t stored);
/*
 * Convert w's projections into `format` with n_threads threads (<= 0: all CPUs); AUTO does
 * nothing. On success w->format, w->qarenas and w->weight_bytes describe the result; on failure
 * (out of memory, logged) w is unchanged. Projections already in the format are left alone, so
 * converting again after routed experts were added converts just those (into a new arena).
 */
dsi_status_t dsn_quant_convert(dsn_weights_t *w, dsn_weight_format_t format, int n_threads);
/* Unmap w's arenas (dsn_weights_destroy calls it). */
void dsn_quant_release(dsn_weights_t *w);

#endif
