// Helpers shared by the kernel files (not part of the public header).
#ifndef FQ_INTERNAL_H
#define FQ_INTERNAL_H
#include <stddef.h>
#include <stdint.h>

/// The FP32 GEMM path actually used for a requested path (-1 automatic): 0 portable, 1 AVX2+FMA,
/// 2 AVX-512F, never above the CPU's (or FIREQ_ISA's) level.
int fq_sgemm_level(int path);
/// One 32-column panel ([k][32] floats) against m rows of x on a resolved level: the FP32 GEMM's
/// fmaf chain over k = 0 … k−1 from 0 for each of the `valid` columns.
void fq_sgemm_panel(int level, const float *x, size_t ldx, size_t m, const float *panel, size_t valid, size_t k,
                    float *y, size_t ldy, int accumulate);
/// A per-thread scratch buffer of at least `count` floats (64-byte aligned), kept for reuse.
enum { FQ_BUFFER_PANEL = 0, FQ_BUFFER_X = 1, FQ_BUFFER_PANEL2 = 2 };
float *fq_thread_buffer(int slot, size_t count);
#endif
