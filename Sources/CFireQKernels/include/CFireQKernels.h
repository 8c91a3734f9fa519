#ifndef CFIREQ_KERNELS_H
#define CFIREQ_KERNELS_H
#include <stddef.h>
#include <stdint.h>

/// Which instruction-set level the dispatcher picked (for reports): 0 portable, 1 AVX2+F16C, 2 AVX-512.
int fq_isa_level(void);

/// Widen n IEEE binary16 values to float32 (exact). Dispatches F16C / portable at run time.
void fq_f16_to_f32(const uint16_t *src, float *dst, size_t n);
/// Widen n bfloat16 values to float32 (exact).
void fq_bf16_to_f32(const uint16_t *src, float *dst, size_t n);

/// Portable references of the two conversions above (tests pin the fast paths to these).
void fq_f16_to_f32_ref(const uint16_t *src, float *dst, size_t n);
void fq_bf16_to_f32_ref(const uint16_t *src, float *dst, size_t n);

/// exp(x) by the Cephes single-precision algorithm (≤ 2 ulp; inputs clamped to [−87.34, 88]).
float fq_expf_ref(float x);
/// out[i] = exp(x[i] − shift); AVX2+FMA or portable, bit-identical (out may equal x).
void fq_exp_shift(const float *x, float shift, float *out, size_t n);
/// fq_exp_shift / fq_softmax_inplace on a chosen path (tests): -1 automatic, 0 portable, 1 AVX2+FMA.
void fq_exp_shift_on(int path, const float *x, float shift, float *out, size_t n);
void fq_softmax_inplace_on(int path, float *x, size_t n);

/// In-place numerically stable softmax over n floats (max-subtracted; sums in 8 fixed lanes).
void fq_softmax_inplace(float *x, size_t n);

/// log(sum(exp(x))) over n floats: max shift, 8-lane float sums per 1024 values, double total.
double fq_logsumexp(const float *x, size_t n);

/// out[i] = silu(gate[i]) * up[i] for n values; silu(g) = g / (1 + exp(-g)).
void fq_swiglu(const float *gate, const float *up, float *out, size_t n);

/// KL(P‖Q) of the distributions softmax(p) and softmax(q) over n logits, given their
/// log-sum-exps (fq_logsumexp); clamped at 0 against rounding.
double fq_kl_logits(const float *p, double lse_p, const float *q, double lse_q, size_t n);
/// Index of the first maximum of n floats (n ≥ 1).
size_t fq_argmax(const float *x, size_t n);

#endif

// ---- FP32 GEMM against pre-packed weights (sgemm.c) ----------------------------------------
// W [n, k] row-major is packed once into panels of 32 columns: packed[p][k][j] = W[32p + j][k]
// (zero beyond n). y[i, c] (+)= Σ_k x[i, k]·W[c, k] for the columns of panels p0 ..< p1, each
// element one FMA chain over k from 0, identical on every path (AVX-512, AVX2+FMA, portable).
size_t fq_sgemm_packed_count(size_t n, size_t k);
void fq_sgemm_pack(const float *w, size_t n, size_t k, float *packed);
void fq_sgemm_packed(const float *x, size_t ldx, size_t m, const float *packed, size_t n, size_t k,
                     size_t p0, size_t p1, float *y, size_t ldy, int accumulate);
void fq_sgemm_packed_ref(const float *x, size_t ldx, size_t m, const float *packed, size_t n, size_t k,
                         size_t p0, size_t p1, float *y, size_t ldy, int accumulate);
/// fq_sgemm_packed on a chosen path (tests): -1 automatic, 0 portable, 1 AVX2+FMA, 2 AVX-512
/// (a path the CPU lacks falls back to the next lower one).
void fq_sgemm_packed_on(int path, const float *x, size_t ldx, size_t m, const float *packed, size_t n, size_t k,
                        size_t p0, size_t p1, float *y, size_t ldy, int accumulate);

// ---- FP8 E4M3 activations (fp8act.c), FIREQ-METHOD.md §2.4 ---------------------------------
/// Nearest E4M3 value of a finite float (ties to even, saturating at ±448), as Float32.
float fq_round_e4m3_ref(float x);
/// Quantizes one token row: σ = max|x|/448 (1 if x = 0), out = E4M3(x/σ); returns σ.
float fq_quantize_fp8_row(const float *x, size_t n, float *out);
float fq_quantize_fp8_row_ref(const float *x, size_t n, float *out);
/// On a chosen path (tests): -1 automatic, 0 portable, 1 AVX2.
float fq_quantize_fp8_row_on(int path, const float *x, size_t n, float *out);
