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
/// out[i] = gelu_tanh(gate[i]) * up[i] for n values (Gemma's GeGLU), with
/// gelu_tanh(g) = ½g(1 + tanh(z)) = g / (1 + exp(−2z)), z = √(2/π)(g + 0.044715 g³);
/// the exponential is fq_exp_shift's, so every path gives the same bits.
void fq_geglu_tanh(const float *gate, const float *up, float *out, size_t n);

/// KL(P‖Q) of the distributions softmax(p) and softmax(q) over n logits, given their
/// log-sum-exps (fq_logsumexp); clamped at 0 against rounding.
double fq_kl_logits(const float *p, double lse_p, const float *q, double lse_q, size_t n);
/// Index of the first maximum of n floats (n ≥ 1).
size_t fq_argmax(const float *x, size_t n);

/// eᵀBe for a symmetric n×n B (row-major, Double), writing r = B·e (n doubles): r accumulated
/// column by column in index order (multiply, then add; no FMA), eᵀr summed in index order. The
/// scale search's error under weights.scale_search_covariance. Dispatches AVX-512 / AVX2 /
/// portable at run time; all three give the same bits.
double fq_qform_f64(const double *B, const double *e, size_t n, double *r);
/// fq_qform_f64 on a chosen path (tests): -1 automatic, 0 portable, 1 AVX2, 2 AVX-512.
double fq_qform_f64_on(int path, const double *B, const double *e, size_t n, double *r);
/// The portable path of fq_qform_f64.
double fq_qform_f64_ref(const double *B, const double *e, size_t n, double *r);

/// One candidate's error under weights.scale_search_covariance: e_j = w_j − ŵ_j (float, widened),
/// ŵ_j = clamp(rint(w_j / t), −8, 7) · s, re-rounded to E4M3 when `reround` is non-zero, then
/// eᵀBe as fq_qform_f64 (scratch: 2n doubles, e then B·e). Bit for bit GPTQ.searchScaleAndCodes'
/// error on every path.
double fq_group_error_cov(const float *w, size_t n, float t, float s, int reround, const double *B, double *scratch);
/// fq_group_error_cov on a chosen path (tests): -1 automatic, 0 portable, 1 AVX2, 2 AVX-512.
double fq_group_error_cov_on(int path, const float *w, size_t n, float t, float s, int reround, const double *B,
                             double *scratch);

/// One g×g covariance block (row-major, Double): blk[a·g + c] += x_a · x_c for each of `rows` tokens
/// in order (x: the block's first input of token 0; tokens ldx floats apart), each element's sum in
/// token order (multiply, then add). AVX-512 / AVX2 for g = 32, portable otherwise; same bits.
void fq_cov_block_accumulate(const float *x, size_t ldx, size_t rows, size_t g, double *blk);
/// fq_cov_block_accumulate on a chosen path (tests): -1 automatic, 0 portable, 1 AVX2, 2 AVX-512.
void fq_cov_block_accumulate_on(int path, const float *x, size_t ldx, size_t rows, size_t g, double *blk);
/// The portable path of fq_cov_block_accumulate (g ≤ 256).
void fq_cov_block_accumulate_ref(const float *x, size_t ldx, size_t rows, size_t g, double *blk);

/// The search matrix of one group (weights.scale_search_covariance): out[r·g + c] = blk[r·g + c] ·
/// √(m_r m_c), m_j = √(σ² + w_j²) in Double (σ² + w_j² in float) with `magnitude`, else 1, then
/// damping · m_r added on the diagonal. `path`: -1 automatic, 0 portable, 2 AVX-512 (g = 32); same bits.
void fq_cov_search_block_on(int path, const double *blk, const float *w, size_t g, float sigma2, int magnitude,
                            double damping, double *out);

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
/// On a chosen path (tests): -1 automatic, 0 portable, 1 AVX2, 2 AVX-512.
float fq_quantize_fp8_row_on(int path, const float *x, size_t n, float *out);

// ---- Attention inputs after RoPE and S (kvquant.c), FIREQ-METHOD.md §3.3 -------------------
/// FP8E4M3.int4ScaleCandidates: the E4M3 scales from the first ≥ a/7 down to max(a/14, 2^-9),
/// descending (1 … 10 values, `out` holds 16).
size_t fq_int4_scale_candidates(float a, float *out);
/// INT4 with an FP8 scale per group of `group` consecutive values of v[0 ..< count], in place:
/// s = max(E4M3(max(max|x|, 1e-5)/7), 2^-9) — or, with `search` 1, the candidate with the least
/// Σ (x − x̂)² (FP32, channels in order, the first wins ties; `search` 2 adds the negated candidates
/// of a·7/8 after them: signed K/V scales) — x ← clamp(rint(x/s), −8, 7)·s.
void fq_int4_groups(float *v, size_t count, size_t group, int search);
/// On a chosen path (tests): -1 automatic, 0 portable, 1 AVX2, 2 AVX-512; same bits on all.
void fq_int4_groups_on(int path, float *v, size_t count, size_t group, int search);
/// FP8 per row in place: v ← E4M3(v/σ)·σ, σ = max|v|/448 (1 if v = 0); returns σ.
float fq_fp8_roundtrip_on(int path, float *v, size_t n);

/// Nearest bfloat16 value of x (ties to even; NaN stays NaN), as Float32.
float fq_round_bf16(float x);
/// The INT4×FP8 linear's epilogue (§2.5 step 3) for `rows` rows of n accumulators:
/// v = acc[r, j]·(sigma[r]·col_scale[j]) (+ bias[j]), rounded to BF16 when `bf16`;
/// y[r, j] = v, or y[r, j] + v when `accumulate`. bias may be NULL.
void fq_linear_epilogue(const float *acc, size_t rows, size_t n, const float *sigma, const float *col_scale,
                        const float *bias, int bf16, float *y, size_t ldy, int accumulate);

// ---- INT4 weights resident, decoded in the kernels (int4gemm.c; Formats/runtime-numerics.md) ----
// Panels of 32 output rows: codes[p][k/2][32] bytes (low nibble q[2kp]+8, high nibble q[2kp+1]+8),
// scales[p][k/G][32] FP32 group scales. ŵ = q·s, or E4M3(q·s) when `reround`.
// y[i, c] = the canonical chain over input pairs: acc = fma(x[2kp+1], ŵ[2kp+1], acc), then
// fma(x[2kp], ŵ[2kp], acc), from +0 (what AVX-512 BF16's vdpbf16ps computes with exact products).
// Needs k even and G | k, G even. y is written (not accumulated); rows `ldy` apart.
size_t fq_int4_codes_bytes(size_t n, size_t k);
size_t fq_int4_scales_count(size_t n, size_t k, size_t G);
/// q [n, k] in −8 … 7, s [n, k/G] the group scales' FP32 values.
void fq_int4_pack(const int8_t *q, const float *s, size_t n, size_t k, size_t G, uint8_t *codes, float *scales);
/// ŵ of a code nibble (q + 8) and a scale.
float fq_int4_weight(unsigned nibble, float s, int reround);
/// 1 when every weight value of these scales is exact in BF16 and not subnormal (the BF16 path's
/// precondition on the weights; x must hold BF16-exact values too, e.g. FP8 E4M3 activations).
int fq_int4_bf16_exact(const float *scales, size_t count, int reround);
int fq_cpu_has_avx512bf16(void);
/// The BF16 path's table decode (int4gemm.c): meta[i] for each scale (same layout as `scales`)
/// when every scale is s = M·2^E with M odd ≤ 15 (every FP8 value) and, with re-rounding, s ≤ 56;
/// returns 0 (meta unusable: pass NULL, the arithmetic decode runs) otherwise.
int fq_int4_meta(const float *scales, size_t count, int reround, uint16_t *meta);
/// The path a request resolves to: 0 portable, 1 AVX2+FMA, 2 AVX-512F, 3 AVX-512 BF16 (needs bf16_ok).
int fq_int4_level(int path, int bf16_ok);
/// The automatic path of an m-row call: fq_int4_level, except that a many-row call (m > 1) whose
/// level is 3 takes the AVX-512F tile (level 2; same bits) when fq_int4_bf16_tile_preferred is 0.
int fq_int4_level_rows(int path, int bf16_ok, size_t m);
/// 1 when the many-row dispatch keeps the AVX-512 BF16 tile: FIREQ_INT4_TILE=bf16|fp32, else
/// measured once per process on a small GEMM (the FP32 tile must take under 0.9× the BF16 tile's time).
int fq_int4_bf16_tile_preferred(void);
/// bf16_ok: x's values and the weights are exact in BF16 (enables path 3); meta from fq_int4_meta or NULL.
void fq_int4_gemm(const float *x, size_t ldx, size_t m, const uint8_t *codes, const float *scales, const uint16_t *meta,
                  size_t n, size_t k, size_t G, int reround, int bf16_ok, size_t p0, size_t p1, float *y, size_t ldy);
void fq_int4_gemm_ref(const float *x, size_t ldx, size_t m, const uint8_t *codes, const float *scales,
                      size_t n, size_t k, size_t G, int reround, size_t p0, size_t p1, float *y, size_t ldy);
/// On a chosen path (tests): -1 automatic, 0 portable, 1 AVX2+FMA, 2 AVX-512F, 3 AVX-512 BF16
/// (a path the CPU lacks falls back to the next lower one).
void fq_int4_gemm_on(int path, const float *x, size_t ldx, size_t m, const uint8_t *codes, const float *scales, const uint16_t *meta,
                     size_t n, size_t k, size_t G, int reround, int bf16_ok, size_t p0, size_t p1, float *y, size_t ldy);
/// A many-row call's x prepared once, in place, for the path `level` (fq_int4_level): rows r0..<r1
/// of x (rows ldx floats apart, k inputs) become the pair-swapped FP32 order (levels 0–2) or BF16
/// pairs (level 3, the row's first k/2 words); fq_int4_gemm_prepared then runs that path's panel
/// loop on them, with the same results as fq_int4_gemm_on on the unprepared rows.
void fq_int4_prepare_rows(int level, float *x, size_t ldx, size_t r0, size_t r1, size_t k);
void fq_int4_gemm_prepared(int level, const float *xp, size_t ldx, size_t m, const uint8_t *codes, const float *scales,
                           const uint16_t *meta, size_t n, size_t k, size_t G, int reround, size_t p0, size_t p1, float *y, size_t ldy);

// ---- INT8 lm_head (int8head.c; Formats/runtime-numerics.md "INT8 lm_head") ----------------------
// Panels of 32 rows: codes[p][k][32] signed bytes, shifts[p][ceil(k/32)][32] group shifts j (0 … 15),
// scales[r] FP32 per row (n entries). v = q·2^−j; y[i, r] = (chain over input pairs from +0:
// fma(x[2kp+1], v[r,2kp+1], acc), then fma(x[2kp], v[r,2kp], acc)) · s_r.
// x must hold fq_int8_round_input's values (BF16, nothing below 2^-100) for every path to agree; k even.
size_t fq_int8_codes_bytes(size_t n, size_t k);
size_t fq_int8_shifts_bytes(size_t n, size_t k);
/// s_r = max|w_r| / 127 (1 for a zero row); per group of 32 inputs the largest j ≤ 15 with
/// max|w/s_r|·2^j ≤ 127; q = clamp(round_half_even(fl(w / s_r)·2^j), ±127); into the panel layout.
void fq_int8_quantize(const float *w, size_t n, size_t k, int8_t *codes, uint8_t *shifts, float *scales);
/// The same from row-major binary16 (or bfloat16 when `bf16`) values.
void fq_int8_quantize16(const uint16_t *w, int bf16, size_t n, size_t k, int8_t *codes, uint8_t *shifts, float *scales);
/// Row r's values (q·2^−j)·s_r (the tied input embedding).
void fq_int8_row(const int8_t *codes, const uint8_t *shifts, const float *scales, size_t k, size_t r, float *out);
/// x = BF16(h) rounded to nearest even, +0 where |h| < 2^-100.
void fq_int8_round_input(const float *h, size_t count, float *x);
/// The path a request resolves to (as fq_int4_level, without the weight precondition).
int fq_int8_level(int path);
void fq_int8_gemm_ref(const float *x, size_t ldx, size_t m, const int8_t *codes, const uint8_t *shifts, const float *scales,
                      size_t n, size_t k, size_t p0, size_t p1, float *y, size_t ldy);
/// Panels p0 ..< p1 on a chosen path (-1 automatic, 0 portable, 1 AVX2+FMA, 2 AVX-512F, 3 AVX-512 BF16).
void fq_int8_gemm_on(int path, const float *x, size_t ldx, size_t m, const int8_t *codes, const uint8_t *shifts, const float *scales,
                     size_t n, size_t k, size_t p0, size_t p1, float *y, size_t ldy);

// ---- persistent thread pool (pool.c) ---------------------------------------------------------
typedef void (*fq_pool_task)(void *ctx, size_t chunk, int worker);
/// Runs fn(ctx, c, worker) for every chunk c < chunks on up to `threads` threads (the caller is
/// worker 0; workers spin briefly between jobs, then sleep). Returns 0 without running anything
/// when the pool is busy (another caller, or a nested call): the caller runs the loop otherwise.
int fq_pool_run(int threads, size_t chunks, fq_pool_task fn, void *ctx);

// ---- 16-bit weight panels (sgemm.c, gemv.c) ---------------------------------------------------
// W [n, k] packed in the GEMM's layout (panels of 32 rows, k-major) as IEEE binary16 (bf16 = 0) or
// bfloat16 (bf16 = 1): weights that are exact in 16 bits (an F16/BF16 checkpoint's, every FP8 E4M3
// value) stay at their stored size. Each output is the fmaf chain over k = 0 … K−1 from 0 that
// fq_sgemm_packed computes on the FP32 values, bit for bit, on every path.
size_t fq_gemv_f16_count(size_t n, size_t k);
/// dst[i] = binary16(src[i]) for n floats; returns 1 when every value is exact (else 0: do not use dst).
int fq_f32_to_f16_exact(const float *src, size_t n, uint16_t *dst);
/// dst[i] = bfloat16(src[i]) (truncated); returns 1 when every value is exact and finite.
int fq_f32_to_bf16_exact(const float *src, size_t n, uint16_t *dst);
/// Packs a row-major [n, k] matrix of 16-bit values into that layout (zero beyond n).
void fq_pack16(const uint16_t *w, size_t n, size_t k, uint16_t *packed);
/// GEMM (any m): each panel is widened to FP32 into a per-thread buffer, then run by the FP32 tiles.
void fq_sgemm_packed16(const float *x, size_t ldx, size_t m, const uint16_t *packed, int bf16, size_t n, size_t k,
                       size_t p0, size_t p1, float *y, size_t ldy, int accumulate);
void fq_sgemm_packed16_on(int path, const float *x, size_t ldx, size_t m, const uint16_t *packed, int bf16, size_t n, size_t k,
                          size_t p0, size_t p1, float *y, size_t ldy, int accumulate);
/// Single row (decode): y[c] (+)= Σ_k x[k]·W[c, k] for the rows of panels p0 ..< p1.
void fq_gemv_h(const float *x, const uint16_t *packed, int bf16, size_t n, size_t k, size_t p0, size_t p1, float *y, int accumulate);
void fq_gemv_h_ref(const float *x, const uint16_t *packed, int bf16, size_t n, size_t k, size_t p0, size_t p1, float *y, int accumulate);
/// On a chosen path (tests): -1 automatic, 0 portable, 1 AVX2+FMA+F16C, 2 AVX-512F (two panels at a time).
void fq_gemv_h_on(int path, const float *x, const uint16_t *packed, int bf16, size_t n, size_t k, size_t p0, size_t p1, float *y, int accumulate);

// ---- attention in a fixed summation order (attention.c) --------------------------------------
/// s[t] = (fmaf chain over d = 0 … D−1 from 0 of q[d]·KT[d·ldkt + t])·scale for t < n (keys transposed).
void fq_attn_scores(const float *q, const float *kt, size_t ldkt, size_t D, size_t n, float scale, float *s);
/// out[d] = fmaf chain over t = 0 … n−1 from 0 of p[t]·V[t·ldv + d], for d < D.
void fq_attn_pv(const float *p, size_t n, const float *v, size_t ldv, size_t D, float *out);
/// Two queries against the same keys (n each): the scores fq_attn_scores gives each alone, faster.
void fq_attn_scores2(const float *q0, const float *q1, const float *kt, size_t ldkt, size_t D, size_t n, float scale, float *s0, float *s1);
/// fq_attn_scores2 on a chosen path (tests): -1 automatic, 0 portable, 1 AVX2+FMA, 2 AVX-512F.
void fq_attn_scores2_on(int path, const float *q0, const float *q1, const float *kt, size_t ldkt, size_t D, size_t n,
                        float scale, float *s0, float *s1);
/// P·V of two queries in one pass over the value rows: out0 over t < n0, out1 over t < n1 (n1 ≥ n0):
/// each exactly what fq_attn_pv gives it alone.
void fq_attn_pv2(const float *p0, size_t n0, const float *p1, size_t n1, const float *v, size_t ldv, size_t D,
                 float *out0, float *out1);
/// fq_attn_pv2 on a chosen path (tests): -1 automatic, 0 portable, 1 AVX2+FMA, 2 AVX-512F.
void fq_attn_pv2_on(int path, const float *p0, size_t n0, const float *p1, size_t n1, const float *v, size_t ldv,
                    size_t D, float *out0, float *out1);
void fq_attn_scores_ref(const float *q, const float *kt, size_t ldkt, size_t D, size_t n, float scale, float *s);
void fq_attn_pv_ref(const float *p, size_t n, const float *v, size_t ldv, size_t D, float *out);
/// On a chosen path (tests): -1 automatic, 0 portable, 1 AVX2+FMA, 2 AVX-512F (scores; P·V alone stays AVX2).
void fq_attn_scores_on(int path, const float *q, const float *kt, size_t ldkt, size_t D, size_t n, float scale, float *s);
void fq_attn_pv_on(int path, const float *p, size_t n, const float *v, size_t ldv, size_t D, float *out);
/// dst[c·ldd + r] = src[r·lds + c] for r < rows, c < cols.
void fq_transpose(const float *src, size_t lds, size_t rows, size_t cols, float *dst, size_t ldd);
