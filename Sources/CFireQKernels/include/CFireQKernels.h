#ifndef CFIREQ_KERNELS_H
#define CFIREQ_KERNELS_H
#include <stddef.h>
#include <stdint.h>

/// Which instruction-set level the dispatcher picked (for reports): 0 portable, 1 AVX2+F16C, 2 AVX-512.
/// The environment variable FIREQ_ISA=portable|avx2|avx512 lowers it (read once per process; a
/// level above the CPU's is never used: the CLI refuses it with fq_isa_requested / fq_cpu_isa_level).
int fq_isa_level(void);
/// The level this CPU supports, whatever FIREQ_ISA says.
int fq_cpu_isa_level(void);
/// FIREQ_ISA as a level: -1 unset, 0 portable, 1 avx2, 2 avx512, -2 an unknown value.
int fq_isa_requested(void);

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

/// Nearest bfloat16 value of x (ties to even; NaN stays NaN), as Float32.
float fq_round_bf16(float x);
/// The INT4×FP8 linear's epilogue (§2.5 step 3) for `rows` rows of n accumulators:
/// v = acc[r, j]·(sigma[r]·col_scale[j]) (+ bias[j]), rounded to BF16 when `bf16`;
/// y[r, j] = v, or y[r, j] + v when `accumulate`. bias may be NULL.
void fq_linear_epilogue(const float *acc, size_t rows, size_t n, const float *sigma, const float *col_scale,
                        const float *bias, int bf16, float *y, size_t ldy, int accumulate);

// ---- decode-path GEMV on binary16 weights (gemv.c) ------------------------------------------
// W [n, k] packed as binary16 in the GEMM's layout (panels of 32 rows, k-major). y[c] (+)=
// Σ_k x[k]·W[c, k] for the rows of panels p0 ..< p1, each one fmaf chain over k from 0: the value
// fq_sgemm_packed computes for that row of x when W's values are exact in binary16.
// The panels are the elementwise binary16 conversion of fq_sgemm_pack's FP32 panels.
size_t fq_gemv_f16_count(size_t n, size_t k);
/// dst[i] = binary16(src[i]) for n floats; returns 1 when every value is exact (else 0: do not use dst).
int fq_f32_to_f16_exact(const float *src, size_t n, uint16_t *dst);
void fq_gemv_f16(const float *x, const uint16_t *packed, size_t n, size_t k, size_t p0, size_t p1, float *y, int accumulate);
void fq_gemv_f16_ref(const float *x, const uint16_t *packed, size_t n, size_t k, size_t p0, size_t p1, float *y, int accumulate);
/// On a chosen path (tests): -1 automatic, 0 portable, 1 AVX2+FMA+F16C.
void fq_gemv_f16_on(int path, const float *x, const uint16_t *packed, size_t n, size_t k, size_t p0, size_t p1, float *y, int accumulate);

// ---- attention in a fixed summation order (attention.c) --------------------------------------
/// s[t] = (fmaf chain over d = 0 … D−1 from 0 of q[d]·KT[d·ldkt + t])·scale for t < n (keys transposed).
void fq_attn_scores(const float *q, const float *kt, size_t ldkt, size_t D, size_t n, float scale, float *s);
/// out[d] = fmaf chain over t = 0 … n−1 from 0 of p[t]·V[t·ldv + d], for d < D.
void fq_attn_pv(const float *p, size_t n, const float *v, size_t ldv, size_t D, float *out);
/// Two queries against the same keys (n each): the scores fq_attn_scores gives each alone, faster.
void fq_attn_scores2(const float *q0, const float *q1, const float *kt, size_t ldkt, size_t D, size_t n, float scale, float *s0, float *s1);
void fq_attn_scores_ref(const float *q, const float *kt, size_t ldkt, size_t D, size_t n, float scale, float *s);
void fq_attn_pv_ref(const float *p, size_t n, const float *v, size_t ldv, size_t D, float *out);
/// On a chosen path (tests): -1 automatic, 0 portable, 1 AVX2+FMA.
void fq_attn_scores_on(int path, const float *q, const float *kt, size_t ldkt, size_t D, size_t n, float scale, float *s);
void fq_attn_pv_on(int path, const float *p, size_t n, const float *v, size_t ldv, size_t D, float *out);
/// dst[c·ldd + r] = src[r·lds + c] for r < rows, c < cols.
void fq_transpose(const float *src, size_t lds, size_t rows, size_t cols, float *dst, size_t ldd);
