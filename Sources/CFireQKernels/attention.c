// Attention products in a fixed summation order, so that one query's result depends only on its
// own query, keys and values — not on how many queries run together. The INT4-FP8 runtime's
// full pass and its single-token decoder both use these, which makes decode = full pass bit for bit.
//
//   fq_attn_scores: s[t] = (fmaf chain over d = 0 … D−1 from 0 of q[d]·K[t][d]) · scale, with the
//                   keys stored transposed (KT[d][t], row stride ldkt), vectorised across keys;
//   fq_attn_pv:     out[d] = fmaf chain over t = 0 … n−1 from 0 of p[t]·V[t][d], vectorised across d.
#include "CFireQKernels.h"
#include <math.h>
#include <string.h>
#include <immintrin.h>

void fq_attn_scores_ref(const float *q, const float *kt, size_t ldkt, size_t D, size_t n, float scale, float *s) {
    for (size_t t = 0; t < n; t++) {
        float acc = 0.0f;
        for (size_t d = 0; d < D; d++) acc = fmaf(q[d], kt[d * ldkt + t], acc);
        s[t] = acc * scale;
    }
}

void fq_attn_pv_ref(const float *p, size_t n, const float *v, size_t ldv, size_t D, float *out) {
    for (size_t d = 0; d < D; d++) {
        float acc = 0.0f;
        for (size_t t = 0; t < n; t++) acc = fmaf(p[t], v[t * ldv + d], acc);
        out[d] = acc;
    }
}

__attribute__((target("avx2,fma")))
static void attn_scores_avx2(const float *q, const float *kt, size_t ldkt, size_t D, size_t n, float scale, float *s) {
    const __m256 sc = _mm256_set1_ps(scale);
    size_t t = 0;
    for (; t + 32 <= n; t += 32) {          // four independent chains of 8 keys
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
        for (size_t d = 0; d < D; d++) {
            const float *row = kt + d * ldkt + t;
            __m256 qd = _mm256_broadcast_ss(q + d);
            a0 = _mm256_fmadd_ps(qd, _mm256_loadu_ps(row), a0);
            a1 = _mm256_fmadd_ps(qd, _mm256_loadu_ps(row + 8), a1);
            a2 = _mm256_fmadd_ps(qd, _mm256_loadu_ps(row + 16), a2);
            a3 = _mm256_fmadd_ps(qd, _mm256_loadu_ps(row + 24), a3);
        }
        _mm256_storeu_ps(s + t, _mm256_mul_ps(a0, sc));
        _mm256_storeu_ps(s + t + 8, _mm256_mul_ps(a1, sc));
        _mm256_storeu_ps(s + t + 16, _mm256_mul_ps(a2, sc));
        _mm256_storeu_ps(s + t + 24, _mm256_mul_ps(a3, sc));
    }
    for (; t + 8 <= n; t += 8) {
        __m256 a0 = _mm256_setzero_ps();
        for (size_t d = 0; d < D; d++) a0 = _mm256_fmadd_ps(_mm256_broadcast_ss(q + d), _mm256_loadu_ps(kt + d * ldkt + t), a0);
        _mm256_storeu_ps(s + t, _mm256_mul_ps(a0, sc));
    }
    if (t < n) fq_attn_scores_ref(q, kt + t, ldkt, D, n - t, scale, s + t);
}

__attribute__((target("avx2,fma")))
static void attn_pv_avx2(const float *p, size_t n, const float *v, size_t ldv, size_t D, float *out) {
    size_t d = 0;
    for (; d + 64 <= D; d += 64) {          // eight independent chains
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
        __m256 a4 = _mm256_setzero_ps(), a5 = _mm256_setzero_ps(), a6 = _mm256_setzero_ps(), a7 = _mm256_setzero_ps();
        for (size_t t = 0; t < n; t++) {
            const float *row = v + t * ldv + d;
            __m256 pt = _mm256_broadcast_ss(p + t);
            a0 = _mm256_fmadd_ps(pt, _mm256_loadu_ps(row), a0);
            a1 = _mm256_fmadd_ps(pt, _mm256_loadu_ps(row + 8), a1);
            a2 = _mm256_fmadd_ps(pt, _mm256_loadu_ps(row + 16), a2);
            a3 = _mm256_fmadd_ps(pt, _mm256_loadu_ps(row + 24), a3);
            a4 = _mm256_fmadd_ps(pt, _mm256_loadu_ps(row + 32), a4);
            a5 = _mm256_fmadd_ps(pt, _mm256_loadu_ps(row + 40), a5);
            a6 = _mm256_fmadd_ps(pt, _mm256_loadu_ps(row + 48), a6);
            a7 = _mm256_fmadd_ps(pt, _mm256_loadu_ps(row + 56), a7);
        }
        _mm256_storeu_ps(out + d, a0); _mm256_storeu_ps(out + d + 8, a1);
        _mm256_storeu_ps(out + d + 16, a2); _mm256_storeu_ps(out + d + 24, a3);
        _mm256_storeu_ps(out + d + 32, a4); _mm256_storeu_ps(out + d + 40, a5);
        _mm256_storeu_ps(out + d + 48, a6); _mm256_storeu_ps(out + d + 56, a7);
    }
    for (; d + 32 <= D; d += 32) {
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
        for (size_t t = 0; t < n; t++) {
            const float *row = v + t * ldv + d;
            __m256 pt = _mm256_broadcast_ss(p + t);
            a0 = _mm256_fmadd_ps(pt, _mm256_loadu_ps(row), a0);
            a1 = _mm256_fmadd_ps(pt, _mm256_loadu_ps(row + 8), a1);
            a2 = _mm256_fmadd_ps(pt, _mm256_loadu_ps(row + 16), a2);
            a3 = _mm256_fmadd_ps(pt, _mm256_loadu_ps(row + 24), a3);
        }
        _mm256_storeu_ps(out + d, a0); _mm256_storeu_ps(out + d + 8, a1);
        _mm256_storeu_ps(out + d + 16, a2); _mm256_storeu_ps(out + d + 24, a3);
    }
    for (; d + 8 <= D; d += 8) {
        __m256 a0 = _mm256_setzero_ps();
        for (size_t t = 0; t < n; t++) a0 = _mm256_fmadd_ps(_mm256_broadcast_ss(p + t), _mm256_loadu_ps(v + t * ldv + d), a0);
        _mm256_storeu_ps(out + d, a0);
    }
    for (; d < D; d++) {
        float acc = 0.0f;
        for (size_t t = 0; t < n; t++) acc = fmaf(p[t], v[t * ldv + d], acc);
        out[d] = acc;
    }
}

// Two queries at once (8 independent chains, one load of each key row): the same per-lane
// chains as attn_scores_avx2, so each query's scores are bit-identical to computing it alone.
__attribute__((target("avx2,fma")))
static void attn_scores2_avx2(const float *q0, const float *q1, const float *kt, size_t ldkt, size_t D, size_t n,
                              float scale, float *s0, float *s1) {
    const __m256 sc = _mm256_set1_ps(scale);
    size_t t = 0;
    for (; t + 32 <= n; t += 32) {
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
        __m256 b0 = _mm256_setzero_ps(), b1 = _mm256_setzero_ps(), b2 = _mm256_setzero_ps(), b3 = _mm256_setzero_ps();
        for (size_t d = 0; d < D; d++) {
            const float *row = kt + d * ldkt + t;
            __m256 k0 = _mm256_loadu_ps(row), k1 = _mm256_loadu_ps(row + 8), k2 = _mm256_loadu_ps(row + 16), k3 = _mm256_loadu_ps(row + 24);
            __m256 x = _mm256_broadcast_ss(q0 + d), y = _mm256_broadcast_ss(q1 + d);
            a0 = _mm256_fmadd_ps(x, k0, a0); a1 = _mm256_fmadd_ps(x, k1, a1); a2 = _mm256_fmadd_ps(x, k2, a2); a3 = _mm256_fmadd_ps(x, k3, a3);
            b0 = _mm256_fmadd_ps(y, k0, b0); b1 = _mm256_fmadd_ps(y, k1, b1); b2 = _mm256_fmadd_ps(y, k2, b2); b3 = _mm256_fmadd_ps(y, k3, b3);
        }
        _mm256_storeu_ps(s0 + t, _mm256_mul_ps(a0, sc)); _mm256_storeu_ps(s0 + t + 8, _mm256_mul_ps(a1, sc));
        _mm256_storeu_ps(s0 + t + 16, _mm256_mul_ps(a2, sc)); _mm256_storeu_ps(s0 + t + 24, _mm256_mul_ps(a3, sc));
        _mm256_storeu_ps(s1 + t, _mm256_mul_ps(b0, sc)); _mm256_storeu_ps(s1 + t + 8, _mm256_mul_ps(b1, sc));
        _mm256_storeu_ps(s1 + t + 16, _mm256_mul_ps(b2, sc)); _mm256_storeu_ps(s1 + t + 24, _mm256_mul_ps(b3, sc));
    }
    if (t < n) {
        attn_scores_avx2(q0, kt + t, ldkt, D, n - t, scale, s0 + t);
        attn_scores_avx2(q1, kt + t, ldkt, D, n - t, scale, s1 + t);
    }
}

// ---- AVX-512F: the same per-lane chains, 16 lanes wide --------------------------------------
// Every lane of every vector below runs exactly the portable chain of its key (scores) or output
// element (P·V), so the AVX-512 paths equal the AVX2 and portable ones bit for bit; they gain by
// keeping eight independent 16-lane chains in flight where the AVX2 path keeps eight 8-lane ones.

static inline __mmask16 lanes_from(size_t r, size_t v) {
    return r <= 16 * v ? 0 : r >= 16 * v + 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (r - 16 * v)) - 1);
}

// 64 keys, or the last n < 64 (n ≥ 1), of one or two queries (q1 may be NULL): four 16-key vectors,
// the lanes past n masked off (zeros in, nothing stored), each active lane its key's portable chain.
__attribute__((target("avx512f")))
static void attn_scores64_avx512(const float *q0, const float *q1, const float *kt, size_t ldkt, size_t D, size_t n,
                                 float scale, float *s0, float *s1) {
    const __mmask16 m0 = lanes_from(n, 0), m1 = lanes_from(n, 1), m2 = lanes_from(n, 2), m3 = lanes_from(n, 3);
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
    for (size_t d = 0; d < D; d++) {
        const float *row = kt + d * ldkt;
        __m512 k0 = _mm512_maskz_loadu_ps(m0, row), k1 = _mm512_maskz_loadu_ps(m1, row + 16),
               k2 = _mm512_maskz_loadu_ps(m2, row + 32), k3 = _mm512_maskz_loadu_ps(m3, row + 48);
        __m512 x = _mm512_set1_ps(q0[d]);
        a0 = _mm512_fmadd_ps(x, k0, a0); a1 = _mm512_fmadd_ps(x, k1, a1);
        a2 = _mm512_fmadd_ps(x, k2, a2); a3 = _mm512_fmadd_ps(x, k3, a3);
        if (q1) {
            __m512 y = _mm512_set1_ps(q1[d]);
            b0 = _mm512_fmadd_ps(y, k0, b0); b1 = _mm512_fmadd_ps(y, k1, b1);
            b2 = _mm512_fmadd_ps(y, k2, b2); b3 = _mm512_fmadd_ps(y, k3, b3);
        }
    }
    const __m512 sc = _mm512_set1_ps(scale);
    _mm512_mask_storeu_ps(s0, m0, _mm512_mul_ps(a0, sc)); _mm512_mask_storeu_ps(s0 + 16, m1, _mm512_mul_ps(a1, sc));
    _mm512_mask_storeu_ps(s0 + 32, m2, _mm512_mul_ps(a2, sc)); _mm512_mask_storeu_ps(s0 + 48, m3, _mm512_mul_ps(a3, sc));
    if (q1) {
        _mm512_mask_storeu_ps(s1, m0, _mm512_mul_ps(b0, sc)); _mm512_mask_storeu_ps(s1 + 16, m1, _mm512_mul_ps(b1, sc));
        _mm512_mask_storeu_ps(s1 + 32, m2, _mm512_mul_ps(b2, sc)); _mm512_mask_storeu_ps(s1 + 48, m3, _mm512_mul_ps(b3, sc));
    }
}

// Two queries over 64 keys at a time (eight 16-lane chains; the last block masked).
__attribute__((target("avx512f")))
static void attn_scores2_avx512(const float *q0, const float *q1, const float *kt, size_t ldkt, size_t D, size_t n,
                                float scale, float *s0, float *s1) {
    for (size_t t = 0; t < n; t += 64)
        attn_scores64_avx512(q0, q1, kt + t, ldkt, D, n - t < 64 ? n - t : 64, scale, s0 + t, s1 + t);
}

__attribute__((target("avx512f")))
static void attn_scores_avx512(const float *q, const float *kt, size_t ldkt, size_t D, size_t n, float scale, float *s) {
    const __m512 sc = _mm512_set1_ps(scale);
    size_t t = 0;
    for (; t + 128 <= n; t += 128) {
        __m512 a[8];
        for (int u = 0; u < 8; u++) a[u] = _mm512_setzero_ps();
        for (size_t d = 0; d < D; d++) {
            const float *row = kt + d * ldkt + t;
            __m512 x = _mm512_set1_ps(q[d]);
            for (int u = 0; u < 8; u++) a[u] = _mm512_fmadd_ps(x, _mm512_loadu_ps(row + 16 * u), a[u]);
        }
        for (int u = 0; u < 8; u++) _mm512_storeu_ps(s + t + 16 * u, _mm512_mul_ps(a[u], sc));
    }
    for (; t < n; t += 64) attn_scores64_avx512(q, NULL, kt + t, ldkt, D, n - t < 64 ? n - t : 64, scale, s + t, NULL);
}

// P·V of two queries over one pass of the value rows: query 0 over t < n0, query 1 over t < n1
// (n1 ≥ n0: after the shared rows query 1 continues alone), each output one chain over t.
__attribute__((target("avx512f")))
static void attn_pv2_avx512(const float *p0, size_t n0, const float *p1, size_t n1, const float *v, size_t ldv,
                            size_t D, float *out0, float *out1) {
    size_t d = 0;
    for (; d + 64 <= D; d += 64) {
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
        size_t t = 0;
        for (; t < n0; t++) {
            const float *row = v + t * ldv + d;
            __m512 v0 = _mm512_loadu_ps(row), v1 = _mm512_loadu_ps(row + 16), v2 = _mm512_loadu_ps(row + 32),
                   v3 = _mm512_loadu_ps(row + 48);
            __m512 x = _mm512_set1_ps(p0[t]), y = _mm512_set1_ps(p1[t]);
            a0 = _mm512_fmadd_ps(x, v0, a0); a1 = _mm512_fmadd_ps(x, v1, a1);
            a2 = _mm512_fmadd_ps(x, v2, a2); a3 = _mm512_fmadd_ps(x, v3, a3);
            b0 = _mm512_fmadd_ps(y, v0, b0); b1 = _mm512_fmadd_ps(y, v1, b1);
            b2 = _mm512_fmadd_ps(y, v2, b2); b3 = _mm512_fmadd_ps(y, v3, b3);
        }
        for (; t < n1; t++) {
            const float *row = v + t * ldv + d;
            __m512 y = _mm512_set1_ps(p1[t]);
            b0 = _mm512_fmadd_ps(y, _mm512_loadu_ps(row), b0); b1 = _mm512_fmadd_ps(y, _mm512_loadu_ps(row + 16), b1);
            b2 = _mm512_fmadd_ps(y, _mm512_loadu_ps(row + 32), b2); b3 = _mm512_fmadd_ps(y, _mm512_loadu_ps(row + 48), b3);
        }
        _mm512_storeu_ps(out0 + d, a0); _mm512_storeu_ps(out0 + d + 16, a1);
        _mm512_storeu_ps(out0 + d + 32, a2); _mm512_storeu_ps(out0 + d + 48, a3);
        _mm512_storeu_ps(out1 + d, b0); _mm512_storeu_ps(out1 + d + 16, b1);
        _mm512_storeu_ps(out1 + d + 32, b2); _mm512_storeu_ps(out1 + d + 48, b3);
    }
    if (d < D) {
        attn_pv_avx2(p0, n0, v + d, ldv, D - d, out0 + d);
        attn_pv_avx2(p1, n1, v + d, ldv, D - d, out1 + d);
    }
}

void fq_attn_pv2_on(int path, const float *p0, size_t n0, const float *p1, size_t n1, const float *v, size_t ldv,
                    size_t D, float *out0, float *out1) {
    int level = path >= 0 ? path : fq_isa_level();
    if (n1 >= n0 && level >= 2 && fq_isa_level() >= 2) attn_pv2_avx512(p0, n0, p1, n1, v, ldv, D, out0, out1);
    else {
        fq_attn_pv_on(level, p0, n0, v, ldv, D, out0);
        fq_attn_pv_on(level, p1, n1, v, ldv, D, out1);
    }
}

void fq_attn_pv2(const float *p0, size_t n0, const float *p1, size_t n1, const float *v, size_t ldv, size_t D,
                 float *out0, float *out1) {
    fq_attn_pv2_on(-1, p0, n0, p1, n1, v, ldv, D, out0, out1);
}

void fq_attn_scores2_on(int path, const float *q0, const float *q1, const float *kt, size_t ldkt, size_t D, size_t n,
                        float scale, float *s0, float *s1) {
    int level = path >= 0 ? path : fq_isa_level();
    if (level >= 2 && fq_isa_level() >= 2) attn_scores2_avx512(q0, q1, kt, ldkt, D, n, scale, s0, s1);
    else if (level >= 1 && fq_isa_level() >= 1) attn_scores2_avx2(q0, q1, kt, ldkt, D, n, scale, s0, s1);
    else { fq_attn_scores_ref(q0, kt, ldkt, D, n, scale, s0); fq_attn_scores_ref(q1, kt, ldkt, D, n, scale, s1); }
}

void fq_attn_scores2(const float *q0, const float *q1, const float *kt, size_t ldkt, size_t D, size_t n, float scale, float *s0, float *s1) {
    fq_attn_scores2_on(-1, q0, q1, kt, ldkt, D, n, scale, s0, s1);
}

void fq_attn_scores_on(int path, const float *q, const float *kt, size_t ldkt, size_t D, size_t n, float scale, float *s) {
    int level = path >= 0 ? path : fq_isa_level();
    if (level >= 2 && fq_isa_level() >= 2) attn_scores_avx512(q, kt, ldkt, D, n, scale, s);
    else if (level >= 1 && fq_isa_level() >= 1) attn_scores_avx2(q, kt, ldkt, D, n, scale, s);
    else fq_attn_scores_ref(q, kt, ldkt, D, n, scale, s);
}

void fq_attn_pv_on(int path, const float *p, size_t n, const float *v, size_t ldv, size_t D, float *out) {
    int level = path >= 0 ? path : fq_isa_level();
    if (level >= 1 && fq_isa_level() >= 1) attn_pv_avx2(p, n, v, ldv, D, out);
    else fq_attn_pv_ref(p, n, v, ldv, D, out);
}

void fq_attn_scores(const float *q, const float *kt, size_t ldkt, size_t D, size_t n, float scale, float *s) {
    fq_attn_scores_on(-1, q, kt, ldkt, D, n, scale, s);
}

void fq_attn_pv(const float *p, size_t n, const float *v, size_t ldv, size_t D, float *out) {
    fq_attn_pv_on(-1, p, n, v, ldv, D, out);
}

void fq_transpose(const float *src, size_t lds, size_t rows, size_t cols, float *dst, size_t ldd) {
    // dst[c·ldd + r] = src[r·lds + c], in 8×8 blocks for locality.
    for (size_t r0 = 0; r0 < rows; r0 += 8) {
        size_t r1 = r0 + 8 < rows ? r0 + 8 : rows;
        for (size_t c0 = 0; c0 < cols; c0 += 8) {
            size_t c1 = c0 + 8 < cols ? c0 + 8 : cols;
            for (size_t c = c0; c < c1; c++)
                for (size_t r = r0; r < r1; r++) dst[c * ldd + r] = src[r * lds + c];
        }
    }
}
