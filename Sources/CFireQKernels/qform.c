// The covariance-weighted scale search's quadratic form eᵀBe (weights.scale_search_covariance,
// Formats/recipe-schema.md), in Double.
//
// r = B·e is accumulated column by column in index order (r_i += B[j, i]·e_j for j = 0…n−1: a
// multiply, then an add — no fused multiply-add), then eᵀr is summed sequentially in index order.
// fq_group_error_cov first forms e_j = w_j − ŵ_j in float (ŵ = clamp(rint(w/t), −8, 7)·s, re-rounded
// to E4M3 with `reround`), widened to Double, as GPTQ.searchScaleAndCodes does.
// Every lane of the vector paths does exactly the portable path's operations on its own r_i, so
// the three paths agree bit for bit with each other and with the plain loops that
// GPTQTests.covarianceKernelsEqualThePlainLoops pins them to.
#pragma STDC FP_CONTRACT OFF
#include "CFireQKernels.h"
#include "fq_internal.h"
#include <math.h>
#include <immintrin.h>

static double dot_seq(const double *e, const double *r, size_t n) {
    double acc = 0.0;
    for (size_t i = 0; i < n; i++) acc += e[i] * r[i];
    return acc;
}

double fq_qform_f64_ref(const double *B, const double *e, size_t n, double *r) {
    for (size_t i = 0; i < n; i++) r[i] = 0.0;
    for (size_t j = 0; j < n; j++) {
        const double ej = e[j], *col = B + j * n;
        for (size_t i = 0; i < n; i++) r[i] += col[i] * ej;
    }
    return dot_seq(e, r, n);
}

// r_i for i ≥ i0 one at a time (the vector paths' remainder), then eᵀr.
static double finish_qform(const double *B, const double *e, size_t n, size_t i0, double *r) {
    for (size_t i = i0; i < n; i++) {
        double acc = 0.0;
        for (size_t j = 0; j < n; j++) acc += B[j * n + i] * e[j];
        r[i] = acc;
    }
    return dot_seq(e, r, n);
}

__attribute__((target("avx2")))
static double qform_avx2(const double *B, const double *e, size_t n, double *r) {
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        __m256d acc = _mm256_setzero_pd();
        for (size_t j = 0; j < n; j++)
            acc = _mm256_add_pd(acc, _mm256_mul_pd(_mm256_loadu_pd(B + j * n + i), _mm256_set1_pd(e[j])));
        _mm256_storeu_pd(r + i, acc);
    }
    return finish_qform(B, e, n, i, r);
}

__attribute__((target("avx512f")))
static double qform_avx512(const double *B, const double *e, size_t n, double *r) {
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        // four independent accumulators hide the add latency; each lane is still one r_i in j order
        __m512d a0 = _mm512_setzero_pd(), a1 = a0, a2 = a0, a3 = a0;
        for (size_t j = 0; j < n; j++) {
            const double *col = B + j * n + i;
            __m512d ej = _mm512_set1_pd(e[j]);
            a0 = _mm512_add_pd(a0, _mm512_mul_pd(_mm512_loadu_pd(col), ej));
            a1 = _mm512_add_pd(a1, _mm512_mul_pd(_mm512_loadu_pd(col + 8), ej));
            a2 = _mm512_add_pd(a2, _mm512_mul_pd(_mm512_loadu_pd(col + 16), ej));
            a3 = _mm512_add_pd(a3, _mm512_mul_pd(_mm512_loadu_pd(col + 24), ej));
        }
        _mm512_storeu_pd(r + i, a0); _mm512_storeu_pd(r + i + 8, a1);
        _mm512_storeu_pd(r + i + 16, a2); _mm512_storeu_pd(r + i + 24, a3);
    }
    for (; i + 8 <= n; i += 8) {
        __m512d acc = _mm512_setzero_pd();
        for (size_t j = 0; j < n; j++)
            acc = _mm512_add_pd(acc, _mm512_mul_pd(_mm512_loadu_pd(B + j * n + i), _mm512_set1_pd(e[j])));
        _mm512_storeu_pd(r + i, acc);
    }
    return finish_qform(B, e, n, i, r);
}

double fq_qform_f64_on(int path, const double *B, const double *e, size_t n, double *r) {
    int level = path >= 0 ? path : fq_isa_level();
    if (level >= 2 && fq_isa_level() >= 2) return qform_avx512(B, e, n, r);
    if (level >= 1 && fq_isa_level() >= 1) return qform_avx2(B, e, n, r);
    return fq_qform_f64_ref(B, e, n, r);
}

double fq_qform_f64(const double *B, const double *e, size_t n, double *r) { return fq_qform_f64_on(-1, B, e, n, r); }

// ---- the whole candidate error: e from (w, t, s), then eᵀBe ----

static inline float code_of(float w, float t) {
    float q = rintf(w / t);  // the default rounding mode: to nearest, ties to even
    return q < -8.0f ? -8.0f : (q > 7.0f ? 7.0f : q);
}

static void group_e_ref(const float *w, size_t n, float t, float s, int reround, double *e) {
    for (size_t j = 0; j < n; j++) {
        float d = code_of(w[j], t) * s;
        if (reround) d = fq_round_e4m3_ref(d);
        e[j] = (double)(w[j] - d);
    }
}

__attribute__((target("avx2,fma")))
static void group_e_avx2(const float *w, size_t n, float t, float s, int reround, double *e) {
    const __m256 vt = _mm256_set1_ps(t), vs = _mm256_set1_ps(s);
    const __m256 lo = _mm256_set1_ps(-8.0f), hi = _mm256_set1_ps(7.0f);
    size_t j = 0;
    for (; j + 8 <= n; j += 8) {
        __m256 x = _mm256_loadu_ps(w + j);
        __m256 q = _mm256_round_ps(_mm256_div_ps(x, vt), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        __m256 d = _mm256_mul_ps(_mm256_min_ps(_mm256_max_ps(q, lo), hi), vs);
        if (reround) d = fq_e4m3_avx2(d);
        __m256 diff = _mm256_sub_ps(x, d);
        _mm256_storeu_pd(e + j, _mm256_cvtps_pd(_mm256_castps256_ps128(diff)));
        _mm256_storeu_pd(e + j + 4, _mm256_cvtps_pd(_mm256_extractf128_ps(diff, 1)));
    }
    group_e_ref(w + j, n - j, t, s, reround, e + j);
}

__attribute__((target("avx512f,avx512bw")))
static void group_e_avx512(const float *w, size_t n, float t, float s, int reround, double *e) {
    const __m512 vt = _mm512_set1_ps(t), vs = _mm512_set1_ps(s);
    const __m512 lo = _mm512_set1_ps(-8.0f), hi = _mm512_set1_ps(7.0f);
    size_t j = 0;
    for (; j + 16 <= n; j += 16) {
        __m512 x = _mm512_loadu_ps(w + j);
        __m512 q = _mm512_roundscale_ps(_mm512_div_ps(x, vt), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        __m512 d = _mm512_mul_ps(_mm512_min_ps(_mm512_max_ps(q, lo), hi), vs);
        if (reround) d = fq_e4m3_avx512(d);
        __m512 diff = _mm512_sub_ps(x, d);
        _mm512_storeu_pd(e + j, _mm512_cvtps_pd(_mm512_castps512_ps256(diff)));
        _mm512_storeu_pd(e + j + 8,
                         _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(diff), 1))));
    }
    group_e_ref(w + j, n - j, t, s, reround, e + j);
}

double fq_group_error_cov_on(int path, const float *w, size_t n, float t, float s, int reround, const double *B,
                             double *scratch) {
    int level = path >= 0 ? path : fq_isa_level();
    if (level >= 2 && fq_isa_level() >= 2) {
        group_e_avx512(w, n, t, s, reround, scratch);
        return qform_avx512(B, scratch, n, scratch + n);
    }
    if (level >= 1 && fq_isa_level() >= 1) {
        group_e_avx2(w, n, t, s, reround, scratch);
        return qform_avx2(B, scratch, n, scratch + n);
    }
    group_e_ref(w, n, t, s, reround, scratch);
    return fq_qform_f64_ref(B, scratch, n, scratch + n);
}

double fq_group_error_cov(const float *w, size_t n, float t, float s, int reround, const double *B, double *scratch) {
    return fq_group_error_cov_on(-1, w, n, t, s, reround, B, scratch);
}

// ---- the covariance blocks: blk[a, c] += x_a · x_c per token, tokens in order ----
// Each element's sum runs over the tokens in order from its stored value (Double multiply, then
// add), on every path; the vector paths keep one row a of the block in registers across a run of
// tokens, which does not change any element's order.

void fq_cov_block_accumulate_ref(const float *x, size_t ldx, size_t rows, size_t g, double *blk) {
    double xs[256];
    for (size_t r = 0; r < rows; r++) {
        const float *row = x + r * ldx;
        for (size_t a = 0; a < g; a++) xs[a] = (double)row[a];
        for (size_t a = 0; a < g; a++) {
            double xa = xs[a], *dst = blk + a * g;
            for (size_t c = 0; c < g; c++) dst[c] += xa * xs[c];
        }
    }
}

enum { COV_TOKENS = 64 };

__attribute__((target("avx512f")))
static void cov_accumulate_avx512(const float *x, size_t ldx, size_t rows, size_t g, double *blk) {
    double xs[COV_TOKENS * 32];
    for (size_t r0 = 0; r0 < rows; r0 += COV_TOKENS) {
        size_t nr = rows - r0 < COV_TOKENS ? rows - r0 : COV_TOKENS;
        for (size_t r = 0; r < nr; r++)
            for (size_t c = 0; c < 32; c++) xs[r * 32 + c] = (double)x[(r0 + r) * ldx + c];
        for (size_t a = 0; a < 32; a++) {
            double *dst = blk + a * 32;
            __m512d a0 = _mm512_loadu_pd(dst), a1 = _mm512_loadu_pd(dst + 8);
            __m512d a2 = _mm512_loadu_pd(dst + 16), a3 = _mm512_loadu_pd(dst + 24);
            for (size_t r = 0; r < nr; r++) {
                const double *xr = xs + r * 32;
                __m512d xa = _mm512_set1_pd(xr[a]);
                a0 = _mm512_add_pd(a0, _mm512_mul_pd(xa, _mm512_loadu_pd(xr)));
                a1 = _mm512_add_pd(a1, _mm512_mul_pd(xa, _mm512_loadu_pd(xr + 8)));
                a2 = _mm512_add_pd(a2, _mm512_mul_pd(xa, _mm512_loadu_pd(xr + 16)));
                a3 = _mm512_add_pd(a3, _mm512_mul_pd(xa, _mm512_loadu_pd(xr + 24)));
            }
            _mm512_storeu_pd(dst, a0); _mm512_storeu_pd(dst + 8, a1);
            _mm512_storeu_pd(dst + 16, a2); _mm512_storeu_pd(dst + 24, a3);
        }
    }
}

__attribute__((target("avx2")))
static void cov_accumulate_avx2(const float *x, size_t ldx, size_t rows, size_t g, double *blk) {
    double xs[COV_TOKENS * 32];
    for (size_t r0 = 0; r0 < rows; r0 += COV_TOKENS) {
        size_t nr = rows - r0 < COV_TOKENS ? rows - r0 : COV_TOKENS;
        for (size_t r = 0; r < nr; r++)
            for (size_t c = 0; c < 32; c++) xs[r * 32 + c] = (double)x[(r0 + r) * ldx + c];
        for (size_t a = 0; a < 32; a++) {
            for (size_t c0 = 0; c0 < 32; c0 += 16) {
                double *dst = blk + a * 32 + c0;
                __m256d a0 = _mm256_loadu_pd(dst), a1 = _mm256_loadu_pd(dst + 4);
                __m256d a2 = _mm256_loadu_pd(dst + 8), a3 = _mm256_loadu_pd(dst + 12);
                for (size_t r = 0; r < nr; r++) {
                    const double *xr = xs + r * 32 + c0;
                    __m256d xa = _mm256_set1_pd(xs[r * 32 + a]);
                    a0 = _mm256_add_pd(a0, _mm256_mul_pd(xa, _mm256_loadu_pd(xr)));
                    a1 = _mm256_add_pd(a1, _mm256_mul_pd(xa, _mm256_loadu_pd(xr + 4)));
                    a2 = _mm256_add_pd(a2, _mm256_mul_pd(xa, _mm256_loadu_pd(xr + 8)));
                    a3 = _mm256_add_pd(a3, _mm256_mul_pd(xa, _mm256_loadu_pd(xr + 12)));
                }
                _mm256_storeu_pd(dst, a0); _mm256_storeu_pd(dst + 4, a1);
                _mm256_storeu_pd(dst + 8, a2); _mm256_storeu_pd(dst + 12, a3);
            }
        }
    }
}

void fq_cov_block_accumulate_on(int path, const float *x, size_t ldx, size_t rows, size_t g, double *blk) {
    int level = path >= 0 ? path : fq_isa_level();
    if (g == 32 && level >= 2 && fq_isa_level() >= 2) cov_accumulate_avx512(x, ldx, rows, g, blk);
    else if (g == 32 && level >= 1 && fq_isa_level() >= 1) cov_accumulate_avx2(x, ldx, rows, g, blk);
    else if (g <= 256) fq_cov_block_accumulate_ref(x, ldx, rows, g, blk);
    else {
        // wider groups than the scratch: the same sums, one element at a time
        for (size_t r = 0; r < rows; r++)
            for (size_t a = 0; a < g; a++)
                for (size_t c = 0; c < g; c++) blk[a * g + c] += (double)x[r * ldx + a] * (double)x[r * ldx + c];
    }
}

void fq_cov_block_accumulate(const float *x, size_t ldx, size_t rows, size_t g, double *blk) {
    fq_cov_block_accumulate_on(-1, x, ldx, rows, g, blk);
}

// ---- the search matrix of one group (GPTQ.covarianceBlock) ----

void fq_cov_search_block_ref(const double *blk, const float *w, size_t g, float sigma2, int magnitude, double damping,
                             double *out) {
    for (size_t r = 0; r < g; r++) {
        double mr = magnitude ? sqrt((double)(sigma2 + w[r] * w[r])) : 1.0;
        for (size_t c = 0; c < g; c++) {
            double mc = magnitude ? sqrt((double)(sigma2 + w[c] * w[c])) : 1.0;
            out[r * g + c] = blk[r * g + c] * sqrt(mr * mc);
        }
        out[r * g + r] += damping * mr;
    }
}

__attribute__((target("avx512f")))
static void cov_search_block_avx512(const double *blk, const float *w, size_t g, float sigma2, int magnitude,
                                    double damping, double *out) {
    double m[32];
    for (size_t c = 0; c < 32; c++) m[c] = magnitude ? sqrt((double)(sigma2 + w[c] * w[c])) : 1.0;
    for (size_t r = 0; r < 32; r++) {
        __m512d mr = _mm512_set1_pd(m[r]);
        for (size_t c = 0; c < 32; c += 8) {
            __m512d f = _mm512_sqrt_pd(_mm512_mul_pd(mr, _mm512_loadu_pd(m + c)));
            _mm512_storeu_pd(out + r * 32 + c, _mm512_mul_pd(_mm512_loadu_pd(blk + r * 32 + c), f));
        }
        out[r * 32 + r] += damping * m[r];
    }
}

void fq_cov_search_block_on(int path, const double *blk, const float *w, size_t g, float sigma2, int magnitude,
                            double damping, double *out) {
    int level = path >= 0 ? path : fq_isa_level();
    if (g == 32 && level >= 2 && fq_isa_level() >= 2) cov_search_block_avx512(blk, w, g, sigma2, magnitude, damping, out);
    else fq_cov_search_block_ref(blk, w, g, sigma2, magnitude, damping, out);
}
