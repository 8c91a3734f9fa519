// Per-token FP8 E4M3 activation quantization (FIREQ-METHOD.md §2.4):
//   σ = max|x| / 448 (σ = 1 when x = 0),  x_q = E4M3(x / σ)  (round to nearest even, saturating),
// returned as the Float32 values of the E4M3 codes (every E4M3 value is exact in FP32).
// The AVX2 path rounds with integer bit operations that give the same result as the portable
// one for every input (tests check both against the Swift codec over all E4M3 ties).
#pragma STDC FP_CONTRACT OFF
#include "CFireQKernels.h"
#include "fq_internal.h"
#include <math.h>
#include <string.h>
#include <immintrin.h>


/// Rounds a finite float to the nearest E4M3 value (ties to even), saturating at ±448.
float fq_round_e4m3_ref(float x) {
    uint32_t b = float_to_bits(x);
    uint32_t sign = b & 0x80000000u, a = b & 0x7FFFFFFFu;
    float ax = bits_to_float(a), r;
    if (ax < 0x1p-6f) {
        // Subnormal range: multiples of 2^-9. Adding 1.5·2^14 (ulp 2^-9) rounds to nearest even.
        float t = ax + 24576.0f;
        r = t - 24576.0f;
    } else {
        // Normal range: keep 3 mantissa bits, round to nearest even on the 20 dropped bits.
        uint32_t lsb = (a >> 20) & 1u;
        uint32_t rounded = (a + 0x7FFFFu + lsb) & 0xFFF00000u;
        r = bits_to_float(rounded);
    }
    if (r > 448.0f) r = 448.0f;
    return bits_to_float(float_to_bits(r) | sign);
}

static float absmax_of(const float *x, size_t n) {
    float m = 0.0f;
    for (size_t i = 0; i < n; i++) { float a = fabsf(x[i]); m = a > m ? a : m; }
    return m;
}

float fq_quantize_fp8_row_ref(const float *x, size_t n, float *out) {
    float m = absmax_of(x, n);
    float sigma = m > 0.0f ? m / 448.0f : 1.0f;
    for (size_t i = 0; i < n; i++) out[i] = fq_round_e4m3_ref(x[i] / sigma);
    return sigma;
}

// max|x| in any order is the same value (max is exact and order-free for finite inputs).
__attribute__((target("avx2,fma")))
static float absmax_avx2(const float *x, size_t n) {
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    __m256 m0 = _mm256_setzero_ps(), m1 = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        m0 = _mm256_max_ps(m0, _mm256_and_ps(_mm256_loadu_ps(x + i), absmask));
        m1 = _mm256_max_ps(m1, _mm256_and_ps(_mm256_loadu_ps(x + i + 8), absmask));
    }
    float t[8], m = 0.0f;
    _mm256_storeu_ps(t, _mm256_max_ps(m0, m1));
    for (int j = 0; j < 8; j++) m = t[j] > m ? t[j] : m;
    for (; i < n; i++) { float a = fabsf(x[i]); m = a > m ? a : m; }
    return m;
}

__attribute__((target("avx2,fma")))
static float quantize_row_avx2(const float *x, size_t n, float *out) {
    float m = absmax_avx2(x, n);
    float sigma = m > 0.0f ? m / 448.0f : 1.0f;
    const __m256 vs = _mm256_set1_ps(sigma);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, fq_e4m3_avx2(_mm256_div_ps(_mm256_loadu_ps(x + i), vs)));
    for (; i < n; i++) out[i] = fq_round_e4m3_ref(x[i] / sigma);
    return sigma;
}

__attribute__((target("avx512f,avx512bw")))
static float quantize_row_avx512(const float *x, size_t n, float *out) {
    __m512 mv = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 16 <= n; i += 16) mv = _mm512_max_ps(mv, _mm512_abs_ps(_mm512_loadu_ps(x + i)));
    float m = _mm512_reduce_max_ps(mv);
    for (; i < n; i++) { float a = fabsf(x[i]); m = a > m ? a : m; }
    float sigma = m > 0.0f ? m / 448.0f : 1.0f;
    const __m512 vs = _mm512_set1_ps(sigma);
    for (i = 0; i + 16 <= n; i += 16) _mm512_storeu_ps(out + i, fq_e4m3_avx512(_mm512_div_ps(_mm512_loadu_ps(x + i), vs)));
    for (; i < n; i++) out[i] = fq_round_e4m3_ref(x[i] / sigma);
    return sigma;
}

float fq_quantize_fp8_row_on(int path, const float *x, size_t n, float *out) {
    int level = path >= 0 ? path : 2;
    if (level >= 2 && fq_isa_level() >= 2) return quantize_row_avx512(x, n, out);
    if (level >= 1 && fq_isa_level() >= 1) return quantize_row_avx2(x, n, out);
    return fq_quantize_fp8_row_ref(x, n, out);
}

float fq_quantize_fp8_row(const float *x, size_t n, float *out) { return fq_quantize_fp8_row_on(-1, x, n, out); }

// ---- INT4×FP8 linear epilogue (FIREQ-METHOD.md §2.5 step 3) ---------------------------------

static inline float round_bf16(float v) {
    uint32_t b;
    memcpy(&b, &v, 4);
    if ((b & 0x7FFFFFFFu) > 0x7F800000u) b = ((b >> 16) | 0x40u) << 16;   // NaN stays NaN (quieted)
    else b = ((b + 0x7FFFu + ((b >> 16) & 1u)) >> 16) << 16;                // nearest even
    float r;
    memcpy(&r, &b, 4);
    return r;
}

float fq_round_bf16(float x) { return round_bf16(x); }

// The four variants are separate loops so each vectorises; every element is computed by the same
// operations in the same order (a product, then the bias add, then the BF16 rounding, then the
// accumulate add), never contracted into an FMA (separate statements).
void fq_linear_epilogue(const float *acc, size_t rows, size_t n, const float *sigma, const float *col_scale,
                        const float *bias, int bf16, float *y, size_t ldy, int accumulate) {
    for (size_t r = 0; r < rows; r++) {
        const float *a = acc + r * n;
        float *out = y + r * ldy;
        const float s = sigma[r];
        if (!bias && !bf16) {
            if (accumulate) { for (size_t j = 0; j < n; j++) { float v = a[j] * (s * col_scale[j]); out[j] = out[j] + v; } }
            else { for (size_t j = 0; j < n; j++) { float v = a[j] * (s * col_scale[j]); out[j] = v; } }
        } else {
            for (size_t j = 0; j < n; j++) {
                float v = a[j] * (s * col_scale[j]);
                if (bias) v += bias[j];
                if (bf16) v = round_bf16(v);
                out[j] = accumulate ? out[j] + v : v;
            }
        }
    }
}
