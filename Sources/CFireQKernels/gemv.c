// Single-row products against weights stored as IEEE binary16 or bfloat16 in the GEMM's panel layout
// (32 rows per panel, k-major inside a panel): the decode path, where one token's GEMV is bound by
// memory traffic and half-size weights halve it. Used only for weights whose values are exactly
// representable in binary16 (every FP8 E4M3 value is), so each output is the very fmaf chain over
// k = 0 … K−1 from 0 that fq_sgemm_packed computes on the FP32 values: decode = full pass, bit for bit.
#include "CFireQKernels.h"
#include <math.h>
#include <string.h>
#include <immintrin.h>

#define NR 32

size_t fq_gemv_f16_count(size_t n, size_t k) { return ((n + NR - 1) / NR) * NR * k; }

/// Converts float32 to binary16 (nearest even); returns 0 when some value is not exact.
static uint16_t f32_to_f16_bits(float f, int *exact) {
    uint32_t b;
    memcpy(&b, &f, 4);
    uint32_t sign = (b >> 16) & 0x8000u;
    float a = fabsf(f);
    uint16_t h;
    if (a == 0.0f) h = 0;
    else if (!(a <= 65504.0f)) { *exact = 0; return 0; }
    else if (a < 0x1p-14f) {                       // subnormal binary16: multiples of 2^-24
        float q = a * 0x1p24f;
        float r = nearbyintf(q);
        if (r != q) *exact = 0;
        h = (uint16_t)r;
    } else {
        int e;
        float m = frexpf(a, &e);                   // a = m·2^e, m in [0.5, 1)
        float q = m * 2048.0f;                     // 11 significant bits
        float r = nearbyintf(q);
        if (r != q) *exact = 0;
        uint32_t mant = (uint32_t)r;               // in [1024, 2048]
        if (mant == 2048) { mant = 1024; e += 1; }
        h = (uint16_t)(((uint32_t)(e + 14) << 10) | (mant - 1024));
    }
    return (uint16_t)(h | sign);
}

int fq_f32_to_f16_exact(const float *src, size_t n, uint16_t *dst) {
    int exact = 1;
    for (size_t i = 0; i < n; i++) dst[i] = f32_to_f16_bits(src[i], &exact);
    return exact;
}

static inline float h_value(uint16_t h, int bf16) {
    float out;
    if (bf16) fq_bf16_to_f32_ref(&h, &out, 1); else fq_f16_to_f32_ref(&h, &out, 1);
    return out;
}

void fq_gemv_h_ref(const float *x, const uint16_t *packed, int bf16, size_t n, size_t k, size_t p0, size_t p1, float *y, int accumulate) {
    for (size_t p = p0; p < p1; p++) {
        const uint16_t *panel = packed + p * NR * k;
        for (size_t j = 0; j < NR; j++) {
            size_t row = p * NR + j;
            if (row >= n) break;
            float acc = 0.0f;
            for (size_t kk = 0; kk < k; kk++) acc = fmaf(x[kk], h_value(panel[kk * NR + j], bf16), acc);
            y[row] = accumulate ? y[row] + acc : acc;
        }
    }
}

__attribute__((target("avx2,fma,f16c")))
static void gemv_h_avx2(const float *x, const uint16_t *packed, int bf16, size_t n, size_t k, size_t p0, size_t p1, float *y, int accumulate) {
    for (size_t p = p0; p < p1; p++) {
        const uint16_t *panel = packed + p * NR * k;
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
        for (size_t kk = 0; kk < k; kk++) {
            const uint16_t *w = panel + kk * NR;
            __m256 xv = _mm256_broadcast_ss(x + kk);
#define W(o) (bf16 ? _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(w + (o)))), 16)) \
                   : _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + (o)))))
            a0 = _mm256_fmadd_ps(xv, W(0), a0);
            a1 = _mm256_fmadd_ps(xv, W(8), a1);
            a2 = _mm256_fmadd_ps(xv, W(16), a2);
            a3 = _mm256_fmadd_ps(xv, W(24), a3);
#undef W
        }
        float acc[NR];
        _mm256_storeu_ps(acc + 0, a0); _mm256_storeu_ps(acc + 8, a1);
        _mm256_storeu_ps(acc + 16, a2); _mm256_storeu_ps(acc + 24, a3);
        for (size_t j = 0; j < NR; j++) {
            size_t row = p * NR + j;
            if (row >= n) break;
            y[row] = accumulate ? y[row] + acc[j] : acc[j];
        }
    }
}

// The same chains 16 lanes wide, two panels at a time: four independent FMA chains per k instead
// of the AVX2 path's four 8-lane ones (the chains, not the loads, bound that path).
__attribute__((target("avx512f")))
static inline __m512 h16_avx512(const uint16_t *w, int bf16) {
    __m256i h = _mm256_loadu_si256((const __m256i *)w);
    return bf16 ? _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)) : _mm512_cvtph_ps(h);
}

__attribute__((target("avx512f")))
static void store_panel(const float *acc, size_t p, size_t n, float *y, int accumulate) {
    for (size_t j = 0; j < NR; j++) {
        size_t row = p * NR + j;
        if (row >= n) break;
        y[row] = accumulate ? y[row] + acc[j] : acc[j];
    }
}

__attribute__((target("avx512f")))
static void gemv_h_avx512(const float *x, const uint16_t *packed, int bf16, size_t n, size_t k, size_t p0, size_t p1, float *y, int accumulate) {
    size_t p = p0;
    float acc[2 * NR];
    for (; p + 1 < p1; p += 2) {
        const uint16_t *pa = packed + p * NR * k, *pb = pa + NR * k;
        __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), b0 = _mm512_setzero_ps(), b1 = _mm512_setzero_ps();
        for (size_t kk = 0; kk < k; kk++) {
            __m512 xv = _mm512_set1_ps(x[kk]);
            a0 = _mm512_fmadd_ps(xv, h16_avx512(pa + kk * NR, bf16), a0);
            a1 = _mm512_fmadd_ps(xv, h16_avx512(pa + kk * NR + 16, bf16), a1);
            b0 = _mm512_fmadd_ps(xv, h16_avx512(pb + kk * NR, bf16), b0);
            b1 = _mm512_fmadd_ps(xv, h16_avx512(pb + kk * NR + 16, bf16), b1);
        }
        _mm512_storeu_ps(acc, a0); _mm512_storeu_ps(acc + 16, a1);
        _mm512_storeu_ps(acc + 32, b0); _mm512_storeu_ps(acc + 48, b1);
        store_panel(acc, p, n, y, accumulate);
        store_panel(acc + NR, p + 1, n, y, accumulate);
    }
    for (; p < p1; p++) {
        const uint16_t *pa = packed + p * NR * k;
        __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
        for (size_t kk = 0; kk < k; kk++) {
            __m512 xv = _mm512_set1_ps(x[kk]);
            a0 = _mm512_fmadd_ps(xv, h16_avx512(pa + kk * NR, bf16), a0);
            a1 = _mm512_fmadd_ps(xv, h16_avx512(pa + kk * NR + 16, bf16), a1);
        }
        _mm512_storeu_ps(acc, a0); _mm512_storeu_ps(acc + 16, a1);
        store_panel(acc, p, n, y, accumulate);
    }
}

void fq_gemv_h_on(int path, const float *x, const uint16_t *packed, int bf16, size_t n, size_t k, size_t p0, size_t p1, float *y, int accumulate) {
    int level = path >= 0 ? path : fq_isa_level();
    if (level >= 2 && fq_isa_level() >= 2) gemv_h_avx512(x, packed, bf16, n, k, p0, p1, y, accumulate);
    else if (level >= 1 && fq_isa_level() >= 1) gemv_h_avx2(x, packed, bf16, n, k, p0, p1, y, accumulate);
    else fq_gemv_h_ref(x, packed, bf16, n, k, p0, p1, y, accumulate);
}

void fq_gemv_h(const float *x, const uint16_t *packed, int bf16, size_t n, size_t k, size_t p0, size_t p1, float *y, int accumulate) {
    fq_gemv_h_on(-1, x, packed, bf16, n, k, p0, p1, y, accumulate);
}

/// Converts float32 to bfloat16; returns 0 when some value is not exact (or not finite).
int fq_f32_to_bf16_exact(const float *src, size_t n, uint16_t *dst) {
    int exact = 1;
    for (size_t i = 0; i < n; i++) {
        uint32_t b;
        memcpy(&b, &src[i], 4);
        if ((b & 0xFFFFu) != 0 || (b & 0x7F800000u) == 0x7F800000u) exact = 0;
        dst[i] = (uint16_t)(b >> 16);
    }
    return exact;
}
