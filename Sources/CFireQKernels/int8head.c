// The INT8 lm_head (recipe `lm_head.format: "int8"`; Formats/runtime-numerics.md "INT8 lm_head").
//
// Layout (made at load from the stored 16-bit table): panels of 32 vocabulary rows,
//   codes[p][k][j]   the signed code q of row 32p + j, input k (0 beyond n);
//   shifts[p][g][j]  the group shift j_g (0 … 15) of row 32p + j, inputs 32g … 32g + 31;
//   scales[r]        the FP32 row scale s_r (n entries).
// With v[r,k] = q·2^−j (exact in BF16 and FP32), logit[i, r] = (chain over input pairs kp from +0:
// fma(x[2kp+1], v[r,2kp+1], acc), then fma(x[2kp], v[r,2kp], acc)) · s_r, x the caller's
// BF16-rounded row (flushed below 2^-100): the products are exact, so AVX-512 BF16's vdpbf16ps
// computes the same chain as the FP32 FMA paths.
#pragma STDC FP_CONTRACT OFF
#include "CFireQKernels.h"
#include "fq_internal.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <immintrin.h>

#define NR 32
#define GK 32   // inputs per group shift

size_t fq_int8_codes_bytes(size_t n, size_t k) { return ((n + NR - 1) / NR) * NR * k; }
size_t fq_int8_shifts_bytes(size_t n, size_t k) { return ((n + NR - 1) / NR) * NR * ((k + GK - 1) / GK); }

static inline float pow2_neg(unsigned j) { return ldexpf(1.0f, -(int)j); }

// Row r (values w[0 … k)) into the panel layout at its lane.
static void quantize_row(const float *w, size_t k, int8_t *codes, uint8_t *shifts, float *scale) {
    float a = 0.0f;
    for (size_t i = 0; i < k; i++) { float v = fabsf(w[i]); if (v > a) a = v; }
    float s = a > 0.0f ? a / 127.0f : 1.0f;
    for (size_t g = 0; g * GK < k; g++) {
        size_t k1 = (g + 1) * GK < k ? (g + 1) * GK : k;
        float v = 0.0f;   // the group's largest |w| / s
        for (size_t i = g * GK; i < k1; i++) { float u = fabsf(w[i] / s); if (u > v) v = u; }
        unsigned j = 0;
        if (v > 0.0f) while (j < 15 && v * ldexpf(1.0f, (int)j + 1) <= 127.0f) j++;
        shifts[g * NR] = (uint8_t)j;
        const float up = ldexpf(1.0f, (int)j);
        for (size_t i = g * GK; i < k1; i++) {
            float r = nearbyintf((w[i] / s) * up);   // to nearest, ties to even
            if (r > 127.0f) r = 127.0f;
            if (r < -127.0f) r = -127.0f;
            codes[i * NR] = (int8_t)r;
        }
    }
    *scale = s;
}

static void clear(size_t n, size_t k, int8_t *codes, uint8_t *shifts) {
    memset(codes, 0, fq_int8_codes_bytes(n, k));
    memset(shifts, 0, fq_int8_shifts_bytes(n, k));
}

#define LANE(base, r, per) ((base) + ((r) / NR) * NR * (per) + ((r) % NR))

void fq_int8_quantize(const float *w, size_t n, size_t k, int8_t *codes, uint8_t *shifts, float *scales) {
    size_t groups = (k + GK - 1) / GK;
    clear(n, k, codes, shifts);
    for (size_t r = 0; r < n; r++) quantize_row(w + r * k, k, LANE(codes, r, k), LANE(shifts, r, groups), scales + r);
}

void fq_int8_quantize16(const uint16_t *w, int bf16, size_t n, size_t k, int8_t *codes, uint8_t *shifts, float *scales) {
    size_t groups = (k + GK - 1) / GK;
    clear(n, k, codes, shifts);
    float *row = malloc(k * sizeof(float));
    for (size_t r = 0; r < n; r++) {
        if (bf16) fq_bf16_to_f32(w + r * k, row, k); else fq_f16_to_f32(w + r * k, row, k);
        quantize_row(row, k, LANE(codes, r, k), LANE(shifts, r, groups), scales + r);
    }
    free(row);
}

void fq_int8_row(const int8_t *codes, const uint8_t *shifts, const float *scales, size_t k, size_t r, float *out) {
    size_t groups = (k + GK - 1) / GK;
    const int8_t *c = LANE(codes, r, k);
    const uint8_t *sh = LANE(shifts, r, groups);
    float s = scales[r];
    for (size_t i = 0; i < k; i++) out[i] = ((float)c[i * NR] * pow2_neg(sh[(i / GK) * NR])) * s;
}

void fq_int8_round_input(const float *h, size_t count, float *x) {
    for (size_t i = 0; i < count; i++) {
        float v = h[i];
        if (fabsf(v) < 0x1p-100f) { x[i] = 0.0f; continue; }   // also NaN-free inputs: the model's own values
        uint32_t b;
        memcpy(&b, &v, 4);
        b = (b + 0x7FFFu + ((b >> 16) & 1u)) & 0xFFFF0000u;   // BF16, round to nearest even
        memcpy(&x[i], &b, 4);
    }
}

// ---- portable reference: the chain written directly ------------------------------------------
void fq_int8_gemm_ref(const float *x, size_t ldx, size_t m, const int8_t *codes, const uint8_t *shifts, const float *scales,
                      size_t n, size_t k, size_t p0, size_t p1, float *y, size_t ldy) {
    size_t groups = (k + GK - 1) / GK;
    for (size_t p = p0; p < p1; p++) {
        const int8_t *c = codes + p * NR * k;
        const uint8_t *sh = shifts + p * NR * groups;
        for (size_t j = 0; j < NR && p * NR + j < n; j++) {
            for (size_t i = 0; i < m; i++) {
                const float *xr = x + i * ldx;
                float acc = 0.0f;
                for (size_t kp = 0; kp < k / 2; kp++) {
                    size_t k1 = 2 * kp + 1, k0 = 2 * kp;
                    acc = fmaf(xr[k1], (float)c[k1 * NR + j] * pow2_neg(sh[(k1 / GK) * NR + j]), acc);
                    acc = fmaf(xr[k0], (float)c[k0 * NR + j] * pow2_neg(sh[(k0 / GK) * NR + j]), acc);
                }
                y[i * ldy + p * NR + j] = acc * scales[p * NR + j];
            }
        }
    }
}

static void scale_columns(float *y, size_t ldy, size_t m, const float *s, size_t valid) {
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < valid; j++) y[i * ldy + j] *= s[j];
}

// ---- one row (decode): FP32 FMA chains straight from the codes (memory-bound: ~K bytes per row) ---
__attribute__((target("avx512f")))
static inline __m512 shift_scale16(const uint8_t *sh) {   // 2^−j for 16 rows
    __m512i j = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)sh));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_sub_epi32(_mm512_set1_epi32(127), j), 23));
}

__attribute__((target("avx512f")))
static inline __m512 value16(const int8_t *c, __m512 sv) {
    return _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)c))), sv);
}

__attribute__((target("avx512f")))
static void gemv_avx512(const float *x, const int8_t *codes, const uint8_t *shifts, const float *scales, size_t n, size_t k,
                        size_t p0, size_t p1, float *y) {
    size_t groups = (k + GK - 1) / GK;
    for (size_t p = p0; p < p1; p += 2) {
        int two = p + 1 < p1;
        const int8_t *c0 = codes + p * NR * k, *c1 = two ? c0 + NR * k : c0;
        const uint8_t *h0 = shifts + p * NR * groups, *h1 = two ? h0 + NR * groups : h0;
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, b0 = a0, b1 = a0;
        __m512 s00 = a0, s01 = a0, s10 = a0, s11 = a0;
        for (size_t kk = 0; kk < k; kk += 2) {
            if (kk % GK == 0) {
                size_t g = kk / GK;
                s00 = shift_scale16(h0 + g * NR); s01 = shift_scale16(h0 + g * NR + 16);
                s10 = shift_scale16(h1 + g * NR); s11 = shift_scale16(h1 + g * NR + 16);
            }
            // the odd input first, then the even one (the pair order)
            for (int e = 1; e >= 0; e--) {
                size_t i = kk + (size_t)e;
                __m512 xv = _mm512_set1_ps(x[i]);
                a0 = _mm512_fmadd_ps(xv, value16(c0 + i * NR, s00), a0);
                a1 = _mm512_fmadd_ps(xv, value16(c0 + i * NR + 16, s01), a1);
                b0 = _mm512_fmadd_ps(xv, value16(c1 + i * NR, s10), b0);
                b1 = _mm512_fmadd_ps(xv, value16(c1 + i * NR + 16, s11), b1);
            }
        }
        for (int t = 0; t < 1 + two; t++) {
            size_t col = (p + (size_t)t) * NR, valid = n - col < NR ? n - col : NR;
            __mmask16 m0 = valid >= 16 ? 0xFFFF : (__mmask16)((1u << valid) - 1);
            __mmask16 m1 = valid <= 16 ? 0 : (valid >= 32 ? 0xFFFF : (__mmask16)((1u << (valid - 16)) - 1));
            __m512 s0 = _mm512_maskz_loadu_ps(m0, scales + col), s1 = _mm512_maskz_loadu_ps(m1, scales + col + 16);
            _mm512_mask_storeu_ps(y + col, m0, _mm512_mul_ps(t ? b0 : a0, s0));
            _mm512_mask_storeu_ps(y + col + 16, m1, _mm512_mul_ps(t ? b1 : a1, s1));
        }
    }
}

// 2^-j for 8 rows' shifts j (0 ≤ j ≤ 15): the exponent field 127 − j.
__attribute__((target("avx2,fma")))
static inline __m256 shift_scale8_avx2(const uint8_t *sh) {
    __m256i j = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)sh));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_sub_epi32(_mm256_set1_epi32(127), j), 23));
}

__attribute__((target("avx2,fma")))
static inline __m256 value8_avx2(const int8_t *c, __m256 sv) {
    return _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)c))), sv);
}

__attribute__((target("avx2,fma")))
static void gemv_avx2(const float *x, const int8_t *codes, const uint8_t *shifts, const float *scales, size_t n, size_t k,
                      size_t p0, size_t p1, float *y) {
    size_t groups = (k + GK - 1) / GK;
    for (size_t p = p0; p < p1; p++) {
        const int8_t *c = codes + p * NR * k;
        const uint8_t *h = shifts + p * NR * groups;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (size_t g = 0; g < groups; g++) {
            const uint8_t *sh = h + g * NR;
            __m256 s0 = shift_scale8_avx2(sh), s1 = shift_scale8_avx2(sh + 8), s2 = shift_scale8_avx2(sh + 16), s3 = shift_scale8_avx2(sh + 24);
            size_t end = (g + 1) * GK < k ? (g + 1) * GK : k;
            for (size_t kk = g * GK; kk < end; kk += 2) {
                for (int e = 1; e >= 0; e--) {
                    size_t i = kk + (size_t)e;
                    __m256 xv = _mm256_set1_ps(x[i]);
                    const int8_t *ci = c + i * NR;
                    a0 = _mm256_fmadd_ps(xv, value8_avx2(ci, s0), a0);
                    a1 = _mm256_fmadd_ps(xv, value8_avx2(ci + 8, s1), a1);
                    a2 = _mm256_fmadd_ps(xv, value8_avx2(ci + 16, s2), a2);
                    a3 = _mm256_fmadd_ps(xv, value8_avx2(ci + 24, s3), a3);
                }
            }
        }
        size_t col = p * NR, valid = n - col < NR ? n - col : NR;
        float out[NR];
        _mm256_storeu_ps(out, a0); _mm256_storeu_ps(out + 8, a1); _mm256_storeu_ps(out + 16, a2); _mm256_storeu_ps(out + 24, a3);
        for (size_t j = 0; j < valid; j++) y[col + j] = out[j] * scales[col + j];
    }
}

// ---- panels decoded once per call, for many rows --------------------------------------------------
// FP32 paths: out[k'][j] = v[row 32p + j][k' XOR 1] (the pair-swapped order of fq_sgemm_panel's chain).
__attribute__((target("avx2,fma")))
static void decode_f32_avx2(const int8_t *c, const uint8_t *sh, size_t k, float *out) {
    for (size_t g = 0; g * GK < k; g++) {
        __m256 sv[4];
        for (int r = 0; r < 4; r++) sv[r] = shift_scale8_avx2(sh + g * NR + 8 * r);
        size_t end = (g + 1) * GK < k ? (g + 1) * GK : k;
        for (size_t kk = g * GK; kk < end; kk++) {
            const int8_t *src = c + (kk ^ 1) * NR;
            for (int r = 0; r < 4; r++) _mm256_storeu_ps(out + kk * NR + 8 * r, value8_avx2(src + 8 * r, sv[r]));
        }
    }
}

// BF16 path: out[kp][j] = (BF16 v[2kp] low, BF16 v[2kp+1] high) — q·2^−j is exact in BF16.
__attribute__((target("avx512f,avx512bw")))
static void decode_bf16(const int8_t *c, const uint8_t *sh, size_t k, uint32_t *out) {
    for (size_t kp = 0; kp < k / 2; kp++) {
        const uint8_t *g = sh + (2 * kp / GK) * NR;
        for (int h = 0; h < 2; h++) {
            __m512 sv = shift_scale16(g + 16 * h);
            __m512 lo = value16(c + 2 * kp * NR + 16 * h, sv), hi = value16(c + (2 * kp + 1) * NR + 16 * h, sv);
            __m512i pair = _mm512_or_si512(_mm512_and_si512(_mm512_castps_si512(hi), _mm512_set1_epi32((int)0xFFFF0000u)),
                                           _mm512_srli_epi32(_mm512_castps_si512(lo), 16));
            _mm512_storeu_si512((void *)(out + kp * NR + 16 * h), pair);
        }
    }
}

static int cpu_level(int path) {
    int level = path >= 0 ? path : 3;
    if (level >= 3 && !(fq_isa_level() >= 2 && fq_cpu_has_avx512bf16())) level = 2;
    if (level <= 2) level = fq_sgemm_level(level == 2 && path < 0 ? -1 : level);
    return level;
}

int fq_int8_level(int path) { return cpu_level(path); }

void fq_int8_gemm_on(int path, const float *x, size_t ldx, size_t m, const int8_t *codes, const uint8_t *shifts, const float *scales,
                     size_t n, size_t k, size_t p0, size_t p1, float *y, size_t ldy) {
    if (m == 0 || p0 >= p1) return;
    int level = cpu_level(path);
    if (level == 0) { fq_int8_gemm_ref(x, ldx, m, codes, shifts, scales, n, k, p0, p1, y, ldy); return; }
    if (m == 1 && level >= 2) { gemv_avx512(x, codes, shifts, scales, n, k, p0, p1, y); return; }
    if (m == 1) { gemv_avx2(x, codes, shifts, scales, n, k, p0, p1, y); return; }
    size_t pairs = k / 2, groups = (k + GK - 1) / GK;
    if (level >= 3) {
        uint32_t *xb = (uint32_t *)fq_thread_buffer(FQ_BUFFER_X, m * pairs);
        for (size_t i = 0; i < m; i++) {
            const uint32_t *src = (const uint32_t *)(x + i * ldx);
            for (size_t kp = 0; kp < pairs; kp++) xb[i * pairs + kp] = (src[2 * kp] >> 16) | (src[2 * kp + 1] & 0xFFFF0000u);
        }
        uint32_t *panel = (uint32_t *)fq_thread_buffer(FQ_BUFFER_PANEL, NR * pairs);
        for (size_t p = p0; p < p1; p++) {
            decode_bf16(codes + p * NR * k, shifts + p * NR * groups, k, panel);
            size_t col = p * NR, valid = n - col < NR ? n - col : NR;
            fq_bf16_panel_rows(xb, pairs, m, panel, pairs, valid, y + col, ldy);
            scale_columns(y + col, ldy, m, scales + col, valid);
        }
        return;
    }
    float *xs = fq_thread_buffer(FQ_BUFFER_X, m * k);
    for (size_t i = 0; i < m; i++)
        fq_swap_pairs(level, x + i * ldx, xs + i * k, k);
    float *panel = fq_thread_buffer(FQ_BUFFER_PANEL, NR * k);
    for (size_t p = p0; p < p1; p++) {
        decode_f32_avx2(codes + p * NR * k, shifts + p * NR * groups, k, panel);
        size_t col = p * NR, valid = n - col < NR ? n - col : NR;
        fq_sgemm_panel(level, xs, k, m, panel, valid, k, y + col, ldy, 0);
        scale_columns(y + col, ldy, m, scales + col, valid);
    }
}
