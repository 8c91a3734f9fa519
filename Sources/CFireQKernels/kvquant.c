// The attention inputs' quantization after RoPE and S (FIREQ-METHOD.md §3.3,
// Formats/runtime-numerics.md "Q/K rotation and K/V groups"): INT4 groups with FP8 scales for K
// and V (optionally the least-squares scale among the E4M3 candidates), FP8 Q per head. Every
// path computes each value with the same IEEE operations as the portable one (and as the Swift
// reference `QuantizedBlocks.quantizeInt4`): the scale search's error is a per-candidate chain
// over the group's channels in order, so the vector paths put candidates, not channels, in lanes.
#pragma STDC FP_CONTRACT OFF
#include "CFireQKernels.h"
#include "fq_internal.h"
#include <math.h>
#include <string.h>
#include <immintrin.h>


/// Value of the positive E4M3 code c (0 … 126).
static inline float e4m3_value(int c) {
    if (c < 8) return (float)c * 0x1p-9f;
    // (1 + m/8)·2^(e−7): the FP32 pattern directly (exponent field e + 120, mantissa m << 20)
    return bits_to_float(((uint32_t)((c >> 3) + 120) << 23) | ((uint32_t)(c & 7) << 20));
}
/// Code of a positive E4M3 value.
static inline int e4m3_code(float r) {
    if (r < 0x1p-6f) return (int)(r * 512.0f);
    uint32_t b = float_to_bits(r);
    return (int)(((((b >> 23) & 0xFFu) - 127u + 7u) << 3) | ((b >> 20) & 7u));
}

/// FP8E4M3.int4ScaleCandidates (LowPrecision): the E4M3 values from the first ≥ a/7 down to
/// max(a/14, 2^-9), descending; at least one. At most 10 (an octave holds 9 E4M3 values).
size_t fq_int4_scale_candidates(float a, float *out) {
    float top = a / 7.0f;
    if (!(top > 0x1p-9f)) { out[0] = 0x1p-9f; return 1; }
    int code = e4m3_code(fq_round_e4m3_ref(top));
    if (e4m3_value(code) < top && code < 126) code += 1;
    float half = top * 0.5f, floor = half > 0x1p-9f ? half : 0x1p-9f;
    size_t n = 0;
    while (code >= 1 && e4m3_value(code) >= floor && n < 16) { out[n++] = e4m3_value(code); code -= 1; }
    if (n == 0) { out[0] = e4m3_value(code + 1 > 126 ? 126 : code + 1); n = 1; }
    return n;
}

/// The search's candidates (search 1: as above; search 2, signed K/V scales: then the candidates of
/// a·7/8 negated, so a group's largest positive value can take code −8). At most 20, padded with 1
/// to a multiple of 16 for the vector paths.
static size_t search_candidates(float a, int search, float out[32]) {
    size_t nc = fq_int4_scale_candidates(a, out);
    if (search == 2) {
        size_t nn = fq_int4_scale_candidates(a * 7.0f / 8.0f, out + nc);
        for (size_t c = nc; c < nc + nn; c++) out[c] = -out[c];
        nc += nn;
    }
    for (size_t c = nc; c < 32; c++) out[c] = 1.0f;
    return nc;
}

static inline float clamp_q(float q) { q = q < -8.0f ? -8.0f : q; return q > 7.0f ? 7.0f : q; }

/// The guard scale s = max(E4M3(max(max|v|, 1e-5)/7), 2^-9); `a` gets max(max|v|, 1e-5).
static inline float guard_scale(const float *v, size_t n, float *a) {
    float m = 0.0f;
    for (size_t d = 0; d < n; d++) { float x = fabsf(v[d]); m = x > m ? x : m; }
    *a = m > 1e-5f ? m : 1e-5f;
    float s = fq_round_e4m3_ref(*a / 7.0f);
    return s < 0x1p-9f ? 0x1p-9f : s;
}

static void group_ref(float *v, size_t n, int search) {
    float a, s = guard_scale(v, n, &a);
    if (search) {
        float cand[32], best = INFINITY;
        size_t nc = search_candidates(a, search, cand);
        for (size_t c = 0; c < nc; c++) {
            float err = 0.0f;
            for (size_t d = 0; d < n; d++) {
                float e = v[d] - clamp_q(rintf(v[d] / cand[c])) * cand[c];
                err = err + e * e;
            }
            if (err < best) { best = err; s = cand[c]; }
        }
    }
    for (size_t d = 0; d < n; d++) v[d] = clamp_q(rintf(v[d] / s)) * s;
}

/// The first candidate with the least error (strictly less replaces: the larger scale wins ties).
static inline float pick(const float *err, const float *cand, size_t nc, float s) {
    float best = INFINITY;
    for (size_t c = 0; c < nc; c++) if (err[c] < best) { best = err[c]; s = cand[c]; }
    return s;
}

__attribute__((target("avx512f")))
static void group_avx512(float *v, size_t n, int search) {
    float a, s = guard_scale(v, n, &a);
    if (search) {
        float cand[32], err[32];
        size_t nc = search_candidates(a, search, cand);
        const __m512 lo = _mm512_set1_ps(-8.0f), hi = _mm512_set1_ps(7.0f);
        for (size_t c0 = 0; c0 < nc; c0 += 16) {
            const __m512 C = _mm512_loadu_ps(cand + c0);
            __m512 E = _mm512_setzero_ps();
            for (size_t d = 0; d < n; d++) {
                __m512 x = _mm512_set1_ps(v[d]);
                __m512 q = _mm512_roundscale_ps(_mm512_div_ps(x, C), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
                q = _mm512_min_ps(_mm512_max_ps(q, lo), hi);
                __m512 e = _mm512_sub_ps(x, _mm512_mul_ps(q, C));
                E = _mm512_add_ps(E, _mm512_mul_ps(e, e));
            }
            _mm512_storeu_ps(err + c0, E);
        }
        s = pick(err, cand, nc, s);
    }
    const __m512 S = _mm512_set1_ps(s), lo = _mm512_set1_ps(-8.0f), hi = _mm512_set1_ps(7.0f);
    size_t d = 0;
    for (; d + 16 <= n; d += 16) {
        __m512 q = _mm512_roundscale_ps(_mm512_div_ps(_mm512_loadu_ps(v + d), S), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        _mm512_storeu_ps(v + d, _mm512_mul_ps(_mm512_min_ps(_mm512_max_ps(q, lo), hi), S));
    }
    for (; d < n; d++) v[d] = clamp_q(rintf(v[d] / s)) * s;
}

__attribute__((target("avx2,fma")))
static void group_avx2(float *v, size_t n, int search) {
    float a, s = guard_scale(v, n, &a);
    const __m256 lo = _mm256_set1_ps(-8.0f), hi = _mm256_set1_ps(7.0f);
    if (search) {
        float cand[32], err[32];
        size_t nc = search_candidates(a, search, cand);
        for (size_t c0 = 0; c0 < nc; c0 += 16) {
            const __m256 C0 = _mm256_loadu_ps(cand + c0), C1 = _mm256_loadu_ps(cand + c0 + 8);
            __m256 E0 = _mm256_setzero_ps(), E1 = _mm256_setzero_ps();
            for (size_t d = 0; d < n; d++) {
                __m256 x = _mm256_set1_ps(v[d]);
                __m256 q0 = _mm256_round_ps(_mm256_div_ps(x, C0), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
                __m256 q1 = _mm256_round_ps(_mm256_div_ps(x, C1), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
                q0 = _mm256_min_ps(_mm256_max_ps(q0, lo), hi);
                q1 = _mm256_min_ps(_mm256_max_ps(q1, lo), hi);
                __m256 e0 = _mm256_sub_ps(x, _mm256_mul_ps(q0, C0)), e1 = _mm256_sub_ps(x, _mm256_mul_ps(q1, C1));
                E0 = _mm256_add_ps(E0, _mm256_mul_ps(e0, e0));
                E1 = _mm256_add_ps(E1, _mm256_mul_ps(e1, e1));
            }
            _mm256_storeu_ps(err + c0, E0);
            _mm256_storeu_ps(err + c0 + 8, E1);
        }
        s = pick(err, cand, nc, s);
    }
    const __m256 S = _mm256_set1_ps(s);
    size_t d = 0;
    for (; d + 8 <= n; d += 8) {
        __m256 q = _mm256_round_ps(_mm256_div_ps(_mm256_loadu_ps(v + d), S), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        _mm256_storeu_ps(v + d, _mm256_mul_ps(_mm256_min_ps(_mm256_max_ps(q, lo), hi), S));
    }
    for (; d < n; d++) v[d] = clamp_q(rintf(v[d] / s)) * s;
}

void fq_int4_groups_on(int path, float *v, size_t count, size_t group, int search) {
    int level = path >= 0 ? path : 2;
    int isa = fq_isa_level();
    for (size_t g = 0; g + group <= count; g += group) {
        if (level >= 2 && isa >= 2) group_avx512(v + g, group, search);
        else if (level >= 1 && isa >= 1) group_avx2(v + g, group, search);
        else group_ref(v + g, group, search);
    }
}

void fq_int4_groups(float *v, size_t count, size_t group, int search) { fq_int4_groups_on(-1, v, count, group, search); }

float fq_fp8_roundtrip_on(int path, float *v, size_t n) {
    float sigma = fq_quantize_fp8_row_on(path, v, n, v);
    for (size_t d = 0; d < n; d++) v[d] = v[d] * sigma;
    return sigma;
}
