// INT4 weights resident in memory, decoded inside the kernels (Formats/runtime-numerics.md).
//
// Layout (made at load from a packed folder's codes and group scales): panels of 32 output rows.
//   codes[p][kp][j]  one byte per (row 32p + j, input pair kp): low nibble q[2kp] + 8, high nibble
//                    q[2kp + 1] + 8 (0x88, i.e. q = 0, beyond n);
//   scales[p][g][j]  the FP32 value of the group scale s of row 32p + j, input group g (0 beyond n).
// The weight value is ŵ = q·s (exact in FP32), or E4M3(q·s) when the recipe re-rounds to FP8.
//
// The canonical accumulation order (every path, bit for bit): each output is one chain over the
// input pairs kp = 0 … k/2 − 1 starting from +0, adding x[2kp+1]·ŵ[2kp+1] and then x[2kp]·ŵ[2kp],
// each addition a fused multiply-add (one rounding to nearest even). That is what AVX-512 BF16's
// vdpbf16ps computes per lane when the products are exact (FP8 × INT4-derived values in BF16), and
// it is the plain FP32 FMA chain over the pair-swapped input order k' = k XOR 1, which the AVX2,
// AVX-512F and portable paths run on FP32 values.
#pragma STDC FP_CONTRACT OFF
#include "CFireQKernels.h"
#include "fq_internal.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <pthread.h>
#include <immintrin.h>

#define NR 32

int fq_cpu_has_avx512vbmi(void);

size_t fq_int4_codes_bytes(size_t n, size_t k) { return ((n + NR - 1) / NR) * NR * (k / 2); }
size_t fq_int4_scales_count(size_t n, size_t k, size_t G) { return ((n + NR - 1) / NR) * NR * (k / G); }

void fq_int4_pack(const int8_t *q, const float *s, size_t n, size_t k, size_t G, uint8_t *codes, float *scales) {
    size_t panels = (n + NR - 1) / NR, groups = k / G, pairs = k / 2;
    for (size_t p = 0; p < panels; p++) {
        uint8_t *c = codes + p * NR * pairs;
        float *sc = scales + p * NR * groups;
        for (size_t j = 0; j < NR; j++) {
            size_t row = p * NR + j;
            for (size_t kp = 0; kp < pairs; kp++) {
                uint8_t b = 0x88;
                if (row < n) b = (uint8_t)((q[row * k + 2 * kp] + 8) | ((q[row * k + 2 * kp + 1] + 8) << 4));
                c[kp * NR + j] = b;
            }
            for (size_t g = 0; g < groups; g++) sc[g * NR + j] = row < n ? s[row * groups + g] : 0.0f;
        }
    }
}

static inline float weight_value(unsigned nibble, float s, int reround) {
    float w = (float)((int)nibble - 8) * s;
    return reround ? fq_round_e4m3_ref(w) : w;
}

float fq_int4_weight(unsigned nibble, float s, int reround) { return weight_value(nibble & 15u, s, reround); }

// Load-time checks see each scale value many times (an FP8 scale is one of 256 values): a small
// direct-mapped cache of bit patterns already decided skips the repeats (same answer, computed once).
#define SCALE_CACHE 1024
static inline unsigned scale_slot(uint32_t bits) { return (bits * 2654435761u) >> 22; }

int fq_int4_bf16_exact(const float *scales, size_t count, int reround) {
    uint32_t seen[SCALE_CACHE];
    unsigned char valid[SCALE_CACHE] = {0};
    for (size_t i = 0; i < count; i++) {
        uint32_t sb;
        memcpy(&sb, &scales[i], 4);
        unsigned h = scale_slot(sb);
        if (valid[h] && seen[h] == sb) continue;
        for (unsigned c = 0; c < 16; c++) {
            float w = weight_value(c, scales[i], reround);
            uint32_t b;
            memcpy(&b, &w, 4);
            // exact in BF16, finite, and not subnormal (vdpbf16ps treats subnormal inputs as 0)
            if ((b & 0xFFFFu) != 0 || (b & 0x7F800000u) == 0x7F800000u || (w != 0.0f && (b & 0x7F800000u) == 0)) return 0;
        }
        seen[h] = sb;
        valid[h] = 1;
    }
    return 1;
}

// ---- portable reference: the canonical order written directly --------------------------------
void fq_int4_gemm_ref(const float *x, size_t ldx, size_t m, const uint8_t *codes, const float *scales,
                      size_t n, size_t k, size_t G, int reround, size_t p0, size_t p1, float *y, size_t ldy) {
    size_t pairs = k / 2, groups = k / G;
    for (size_t p = p0; p < p1; p++) {
        const uint8_t *c = codes + p * NR * pairs;
        const float *sc = scales + p * NR * groups;
        for (size_t j = 0; j < NR && p * NR + j < n; j++) {
            for (size_t i = 0; i < m; i++) {
                const float *xr = x + i * ldx;
                float acc = 0.0f;
                for (size_t kp = 0; kp < pairs; kp++) {
                    uint8_t b = c[kp * NR + j];
                    float s = sc[(2 * kp / G) * NR + j];
                    acc = fmaf(xr[2 * kp + 1], weight_value(b >> 4, s, reround), acc);
                    acc = fmaf(xr[2 * kp], weight_value(b & 15u, s, reround), acc);
                }
                y[i * ldy + p * NR + j] = acc;
            }
        }
    }
}

// ---- FP32 paths: decode a panel into the pair-swapped FP32 layout, run the FP32 GEMM tiles -------
// out[k'][j] = ŵ[row 32p + j][k' XOR 1].
static void decode_f32_ref(const uint8_t *c, const float *sc, size_t k, size_t G, int reround, float *out) {
    for (size_t kp = 0; kp < k / 2; kp++) {
        for (size_t j = 0; j < NR; j++) {
            uint8_t b = c[kp * NR + j];
            float s = sc[(2 * kp / G) * NR + j];
            out[(2 * kp) * NR + j] = weight_value(b >> 4, s, reround);
            out[(2 * kp + 1) * NR + j] = weight_value(b & 15u, s, reround);
        }
    }
}

__attribute__((target("avx2,fma")))
static void decode_f32_avx2(const uint8_t *c, const float *sc, size_t k, size_t G, int reround, float *out) {
    const __m256i low = _mm256_set1_epi32(15), eight = _mm256_set1_epi32(8);
    for (size_t kp = 0; kp < k / 2; kp++) {
        const float *s = sc + (2 * kp / G) * NR;
        for (size_t q = 0; q < NR; q += 8) {
            __m256i b = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(c + kp * NR + q)));
            __m256 sv = _mm256_loadu_ps(s + q);
            __m256 lo = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_and_si256(b, low), eight)), sv);
            __m256 hi = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_srli_epi32(b, 4), eight)), sv);
            if (reround) { lo = fq_e4m3_avx2(lo); hi = fq_e4m3_avx2(hi); }
            _mm256_storeu_ps(out + (2 * kp) * NR + q, hi);
            _mm256_storeu_ps(out + (2 * kp + 1) * NR + q, lo);
        }
    }
}

// E4M3 rounding of non-negative exact products v = |q|·s, as fq_round_e4m3_ref: adding and
// subtracting c = 2^(e+20) (e = v's exponent, at least −6: below 2^−6 E4M3's quantum is 2^−9)
// rounds v to 4 significant bits, ties to even; then saturate at 448.
__attribute__((target("avx512f,avx512bw")))
static inline __m512 e4m3_magnitude_avx512(__m512 v) {
    __m512i e = _mm512_max_epu32(_mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32(0x7F800000)), _mm512_set1_epi32(121 << 23));
    __m512 c = _mm512_castsi512_ps(_mm512_add_epi32(e, _mm512_set1_epi32(20 << 23)));
    return _mm512_min_ps(_mm512_sub_ps(_mm512_add_ps(v, c), c), _mm512_set1_ps(448.0f));
}

// 16 rows' (lo, hi) weights of one input pair, from 16 code bytes and 16 scales: |q| from a
// 16-entry table (vpermps reads the low 4 bits of each index), times |s|, rounded when asked, then
// the sign of q·s put back: q's (nibble < 8) XOR s's (a signed scale, recipe `signed_scales`).
__attribute__((target("avx512f,avx512bw")))
static inline void decode16_avx512(const uint8_t *c, __m512 sv, int reround, __m512 *lo, __m512 *hi) {
    const __m512 mag = _mm512_setr_ps(8, 7, 6, 5, 4, 3, 2, 1, 0, 1, 2, 3, 4, 5, 6, 7);
    const __m512i sign = _mm512_set1_epi32((int)0x80000000u);
    __m512i ss = _mm512_and_si512(_mm512_castps_si512(sv), sign);
    __m512 sa = _mm512_castsi512_ps(_mm512_andnot_si512(sign, _mm512_castps_si512(sv)));
    __m512i b = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)c));
    __m512i bh = _mm512_srli_epi32(b, 4);
    __m512 l = _mm512_mul_ps(_mm512_permutexvar_ps(b, mag), sa);
    __m512 h = _mm512_mul_ps(_mm512_permutexvar_ps(bh, mag), sa);
    if (reround) { l = e4m3_magnitude_avx512(l); h = e4m3_magnitude_avx512(h); }
    // sign bit 31 where the nibble's bit 3 is clear (q < 0), flipped where s < 0
    __m512i sl = _mm512_andnot_si512(_mm512_slli_epi32(b, 28), sign), sh = _mm512_andnot_si512(_mm512_slli_epi32(b, 24), sign);
    *lo = _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(l), _mm512_xor_si512(sl, ss)));
    *hi = _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(h), _mm512_xor_si512(sh, ss)));
}

__attribute__((target("avx512f,avx512bw")))
static void decode_f32_avx512(const uint8_t *c, const float *sc, size_t k, size_t G, int reround, float *out) {
    for (size_t g = 0; g < k / G; g++) {
        __m512 s0 = _mm512_loadu_ps(sc + g * NR), s1 = _mm512_loadu_ps(sc + g * NR + 16);
        for (size_t kp = g * G / 2; kp < (g + 1) * G / 2; kp++) {
            __m512 lo, hi;
            decode16_avx512(c + kp * NR, s0, reround, &lo, &hi);
            _mm512_storeu_ps(out + (2 * kp) * NR, hi);
            _mm512_storeu_ps(out + (2 * kp + 1) * NR, lo);
            decode16_avx512(c + kp * NR + 16, s1, reround, &lo, &hi);
            _mm512_storeu_ps(out + (2 * kp) * NR + 16, hi);
            _mm512_storeu_ps(out + (2 * kp + 1) * NR + 16, lo);
        }
    }
}

// One row (decode) on AVX2+FMA: ŵ decoded in registers, never written out. Per 8 rows and input
// pair the code bytes are widened to dwords and each nibble c converted to FP32; then q·s, q = c − 8:
//  * generic scales: the reference's operations, cvt(c − 8)·s, one rounded product;
//  * with the table metadata (s = M·2^E, M odd ≤ 15, −100 ≤ E ≤ 100; when re-rounding also
//    E ≥ −9 and s ≤ 56): fmsub(c, s, 8s), the exact (c − 8)·s rounded once, the same value.
//    Re-rounding is then Veltkamp's split into 4 significant bits: with K = 2^20 + 1 (s·K and
//    8·s·K exact), γ = RN(q·s·K) = fmsub(c, s·K, 8·s·K) and ŵ = γ + (v − γ) is v = q·s rounded
//    to 4 significant bits, ties to even — E4M3's normal spacing. A product below 2^−6 is a
//    multiple of 2^−9 with at most 3 significant bits (E ≥ −9) and stays; nothing saturates
//    (|v| ≤ 8·56 = 448); zero stays +0. Checked against fq_round_e4m3_ref for every FP8 scale
//    and code (Int4FP8LinearTests.oneRowDecodeEveryScaleAndCode).
#define VK 1048577.0f   /* 2^20 + 1 */
__attribute__((target("avx2,fma"), noinline))
static void gemv_direct_avx2_reround(const float *x, const uint8_t *codes, const float *scales, size_t n, size_t k, size_t G,
                                     size_t p0, size_t p1, float *y) {
    size_t pairs = k / 2, groups = k / G;
    const __m256i low = _mm256_set1_epi32(15);
    // 16 rows at a time (two accumulator chains): their group constants stay in registers
    for (size_t p = p0; p < p1; p++) {
        const uint8_t *c = codes + p * NR * pairs;
        const float *sc = scales + p * NR * groups;
        float out[NR];
        for (int h = 0; h < 2; h++) {
            __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
            for (size_t g = 0; g < groups; g++) {
                __m256 s[2], s8[2], sk[2], sk8[2];
                for (int r = 0; r < 2; r++) {
                    s[r] = _mm256_loadu_ps(sc + g * NR + 16 * h + 8 * r);
                    s8[r] = _mm256_mul_ps(s[r], _mm256_set1_ps(8.0f));
                    sk[r] = _mm256_mul_ps(s[r], _mm256_set1_ps(VK));
                    sk8[r] = _mm256_mul_ps(sk[r], _mm256_set1_ps(8.0f));
                }
                for (size_t kp = g * G / 2; kp < (g + 1) * G / 2; kp++) {
                    __m256 x1 = _mm256_broadcast_ss(x + 2 * kp + 1), x0 = _mm256_broadcast_ss(x + 2 * kp);
                    for (int r = 0; r < 2; r++) {
                        __m256i b = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(c + kp * NR + 16 * h + 8 * r)));
                        __m256i nl = _mm256_and_si256(b, low), nh = _mm256_srli_epi32(b, 4);
                        __m256 cl = _mm256_cvtepi32_ps(nl), ch = _mm256_cvtepi32_ps(nh);
                        __m256 lo = _mm256_fmsub_ps(cl, s[r], s8[r]), hi = _mm256_fmsub_ps(ch, s[r], s8[r]);
                        __m256 gl = _mm256_fmsub_ps(cl, sk[r], sk8[r]), gh = _mm256_fmsub_ps(ch, sk[r], sk8[r]);
                        lo = _mm256_add_ps(gl, _mm256_sub_ps(lo, gl));
                        hi = _mm256_add_ps(gh, _mm256_sub_ps(hi, gh));
                        acc[r] = _mm256_fmadd_ps(x1, hi, acc[r]);
                        acc[r] = _mm256_fmadd_ps(x0, lo, acc[r]);
                    }
                }
            }
            _mm256_storeu_ps(out + 16 * h, acc[0]);
            _mm256_storeu_ps(out + 16 * h + 8, acc[1]);
        }
        size_t col = p * NR, valid = n - col < NR ? n - col : NR;
        for (size_t j = 0; j < valid; j++) y[col + j] = out[j];
    }
}

// Without re-rounding a weight costs a few operations, and two chains of 16 rows leave the FMA
// latency (two dependent FMAs per input pair) exposed: all 32 rows of a panel run at once, four
// chains; the group constants go through a small L1 array (measured: 12.3 → 15.8 G weights/s one
// thread, 1536 × 576, G 64). Re-rounding keeps the 16-row body above, which is bound by its
// operation count, and measured slower with 32 rows. Same operations per value either way.
__attribute__((target("avx2,fma"), always_inline))
static inline void gemv_direct_avx2_body32(const float *x, const uint8_t *codes, const float *scales, size_t n, size_t k, size_t G,
                                           const int table, size_t p0, size_t p1, float *y) {
    size_t pairs = k / 2, groups = k / G;
    const __m256i low = _mm256_set1_epi32(15), eight = _mm256_set1_epi32(8);
    __attribute__((aligned(32))) float cs[2][NR];   // s and 8·s of the panel's 32 rows, one group
    for (size_t p = p0; p < p1; p++) {
        const uint8_t *c = codes + p * NR * pairs;
        const float *sc = scales + p * NR * groups;
        __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
        for (size_t g = 0; g < groups; g++) {
            for (int r = 0; r < 4; r++) {
                __m256 s = _mm256_loadu_ps(sc + g * NR + 8 * r);
                _mm256_store_ps(cs[0] + 8 * r, s);
                _mm256_store_ps(cs[1] + 8 * r, _mm256_mul_ps(s, _mm256_set1_ps(8.0f)));
            }
            for (size_t kp = g * G / 2; kp < (g + 1) * G / 2; kp++) {
                __m256 x1 = _mm256_broadcast_ss(x + 2 * kp + 1), x0 = _mm256_broadcast_ss(x + 2 * kp);
                for (int r = 0; r < 4; r++) {
                    __m256i b = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(c + kp * NR + 8 * r)));
                    __m256i nl = _mm256_and_si256(b, low), nh = _mm256_srli_epi32(b, 4);
                    __m256 s = _mm256_load_ps(cs[0] + 8 * r), lo, hi;
                    if (table) {
                        __m256 s8 = _mm256_load_ps(cs[1] + 8 * r);
                        lo = _mm256_fmsub_ps(_mm256_cvtepi32_ps(nl), s, s8);
                        hi = _mm256_fmsub_ps(_mm256_cvtepi32_ps(nh), s, s8);
                    } else {
                        lo = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(nl, eight)), s);
                        hi = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(nh, eight)), s);
                    }
                    acc[r] = _mm256_fmadd_ps(x1, hi, acc[r]);
                    acc[r] = _mm256_fmadd_ps(x0, lo, acc[r]);
                }
            }
        }
        float out[NR];
        for (int r = 0; r < 4; r++) _mm256_storeu_ps(out + 8 * r, acc[r]);
        size_t col = p * NR, valid = n - col < NR ? n - col : NR;
        for (size_t j = 0; j < valid; j++) y[col + j] = out[j];
    }
}

__attribute__((target("avx2,fma")))
static void gemv_f32_direct_avx2(const float *x, const uint8_t *codes, const float *scales, const uint16_t *meta, size_t n, size_t k,
                                 size_t G, int reround, size_t p0, size_t p1, float *y) {
    if (meta && reround) gemv_direct_avx2_reround(x, codes, scales, n, k, G, p0, p1, y);
    else if (meta) gemv_direct_avx2_body32(x, codes, scales, n, k, G, 1, p0, p1, y);
    else gemv_direct_avx2_body32(x, codes, scales, n, k, G, 0, p0, p1, y);
}

// dst == src allowed (both pair members are read before either is written).
static void swap_pairs(const float *src, float *dst, size_t k) {
    for (size_t kp = 0; kp < k / 2; kp++) { float a = src[2 * kp], b = src[2 * kp + 1]; dst[2 * kp] = b; dst[2 * kp + 1] = a; }
}

__attribute__((target("avx2")))
static void swap_pairs_avx2(const float *src, float *dst, size_t k) {
    size_t kk = 0;
    for (; kk + 8 <= k; kk += 8) _mm256_storeu_ps(dst + kk, _mm256_permute_ps(_mm256_loadu_ps(src + kk), 0xB1));
    swap_pairs(src + kk, dst + kk, k - kk);
}

void fq_swap_pairs(int level, const float *src, float *dst, size_t k) {
    if (level >= 1) swap_pairs_avx2(src, dst, k);
    else swap_pairs(src, dst, k);
}

// The panel loop over x already in the pair-swapped order (rows ldx apart).
static void gemm_f32_swapped(int level, const float *xs, size_t ldx, size_t m, const uint8_t *codes, const float *scales,
                             size_t n, size_t k, size_t G, int reround, size_t p0, size_t p1, float *y, size_t ldy) {
    size_t pairs = k / 2, groups = k / G;
    float *panel = fq_thread_buffer(FQ_BUFFER_PANEL, NR * k);
    for (size_t p = p0; p < p1; p++) {
        const uint8_t *c = codes + p * NR * pairs;
        const float *sc = scales + p * NR * groups;
        if (level >= 2) decode_f32_avx512(c, sc, k, G, reround, panel);
        else if (level >= 1) decode_f32_avx2(c, sc, k, G, reround, panel);
        else decode_f32_ref(c, sc, k, G, reround, panel);
        size_t col = p * NR, valid = n - col < NR ? n - col : NR;
        fq_sgemm_panel(level, xs, ldx, m, panel, valid, k, y + col, ldy, 0);
    }
}

static void gemm_f32_paths(int level, const float *x, size_t ldx, size_t m, const uint8_t *codes, const float *scales,
                           const uint16_t *meta, size_t n, size_t k, size_t G, int reround, size_t p0, size_t p1,
                           float *y, size_t ldy) {
    if (m == 1 && level >= 1 && (!reround || meta)) { gemv_f32_direct_avx2(x, codes, scales, meta, n, k, G, reround, p0, p1, y); return; }
    // x with each input pair swapped (x'[k'] = x[k' XOR 1]), once per call.
    float *xs = fq_thread_buffer(FQ_BUFFER_X, m * k);
    for (size_t i = 0; i < m; i++) fq_swap_pairs(level, x + i * ldx, xs + i * k, k);
    gemm_f32_swapped(level, xs, k, m, codes, scales, n, k, G, reround, p0, p1, y, ldy);
}

// ---- table decode for the BF16 path --------------------------------------------------------------
// An FP8 group scale is s = M·2^E with M odd, 1 ≤ M ≤ 15. Every product q·s is then (q·M)·2^E, and
// E4M3 rounding of it is R(q·M)·2^E with R rounding an integer of |q·M| ≤ 120 to 4 significant bits:
// a subnormal result (below 2^−6) only arises for subnormal s (E = −9, |q·M| < 8), and there it is
// an exact multiple of 2^−9 that R leaves alone; in the normal range rounding commutes with powers
// of two; saturation cannot occur while 8·s ≤ 448. So ŵ's BF16 pattern is a table entry
// bf16(R(q·M)) (or bf16(q·M) without re-rounding), indexed by (class (M−1)/2, code nibble), plus E
// added to its exponent field (zero stays zero). Per (row, group): meta = class·16 | (E as int8) << 8,
// plus 0x80 for a negative scale (recipe `signed_scales`): the table value's sign bit is then
// flipped by adding 0x8000 to the 16-bit pattern with E (the add wraps; a zero weight's sign does
// not matter — every accumulator starts at +0, and adding a zero product to +0 gives +0).

static uint16_t bf16_table[2][128];
static uint8_t bf16_low[2][128], bf16_high[2][128];   // the table's low and high bytes
static volatile int bf16_table_ready;

static void build_tables(void) {
    if (bf16_table_ready) return;
    for (int rr = 0; rr < 2; rr++)
        for (int c = 0; c < 8; c++)
            for (int nib = 0; nib < 16; nib++) {
                float v = (float)((nib - 8) * (2 * c + 1));
                if (rr) v = fq_round_e4m3_ref(v);
                uint32_t b;
                memcpy(&b, &v, 4);
                bf16_table[rr][c * 16 + nib] = (uint16_t)(b >> 16);
                bf16_low[rr][c * 16 + nib] = (uint8_t)(b >> 16);
                bf16_high[rr][c * 16 + nib] = (uint8_t)(b >> 24);
            }
    __atomic_store_n(&bf16_table_ready, 1, __ATOMIC_RELEASE);
}

static int fq_int4_meta_one(float scale, int reround, uint16_t *out);

int fq_int4_meta(const float *scales, size_t count, int reround, uint16_t *meta) {
    build_tables();
    uint32_t seen[SCALE_CACHE];
    uint16_t known[SCALE_CACHE];
    unsigned char valid[SCALE_CACHE] = {0};
    for (size_t i = 0; i < count; i++) {
        uint32_t sb;
        memcpy(&sb, &scales[i], 4);
        unsigned h = scale_slot(sb);
        if (valid[h] && seen[h] == sb) { meta[i] = known[h]; continue; }
        if (!fq_int4_meta_one(scales[i], reround, &meta[i])) return 0;
        seen[h] = sb;
        known[h] = meta[i];
        valid[h] = 1;
    }
    return 1;
}

// One scale's table-decode metadata; 0 when the scale does not fit the table decode.
static int fq_int4_meta_one(float scale, int reround, uint16_t *out) {
    float s = fabsf(scale);
    if (s == 0.0f) { *out = 0; return 1; }                     // padding rows (their codes are q = 0)
    if (!(s > 0.0f) || (reround && s > 56.0f)) return 0;
    int e;
    float m = frexpf(s, &e);                                  // s = m·2^e, m in [0.5, 1)
    int E = e - 4;
    float M = ldexpf(m, 4);                                   // s = M·2^E, M in [8, 16)
    while (M == floorf(M) && fmodf(M, 2.0f) == 0.0f) { M /= 2; E += 1; }
    if (M != floorf(M) || M > 15.0f || E < -100 || E > 100) return 0;
    // re-rounding: a product below 2^-6 must be a multiple of 2^-9 (E4M3's subnormal spacing),
    // which R(q·M)·2^E only gives for E >= -9 (every FP8 scale; not e.g. a BF16 scale 2^-10)
    if (reround && E < -9) return 0;
    int c = ((int)M - 1) / 2;
    *out = (uint16_t)((c * 16) | (scale < 0.0f ? 0x80 : 0) | ((uint16_t)(uint8_t)(int8_t)E << 8));
    return 1;
}

// Per-group broadcasts for 16 rows: class·16 in both words of each dword, E<<7 (+ 0x8000 for a
// negative scale) in both words.
__attribute__((target("avx512f,avx512bw")))
static inline void meta16(const uint16_t *meta, __m512i *classpair, __m512i *exppair) {
    __m512i m = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)meta));
    __m512i c = _mm512_and_si512(m, _mm512_set1_epi32(0x70));
    *classpair = _mm512_or_si512(c, _mm512_slli_epi32(c, 16));
    __m512i e7 = _mm512_slli_epi32(_mm512_srai_epi32(_mm512_slli_epi32(m, 16), 24), 7);
    __m512i neg = _mm512_slli_epi32(_mm512_and_si512(m, _mm512_set1_epi32(0x80)), 8);
    __m512i w = _mm512_xor_si512(_mm512_and_si512(e7, _mm512_set1_epi32(0xFFFF)), neg);
    *exppair = _mm512_or_si512(w, _mm512_slli_epi32(w, 16));
}

// 16 rows' BF16 pairs (ŵ[2kp] low word, ŵ[2kp+1] high word) of one input pair, by table.
__attribute__((target("avx512f,avx512bw")))
static inline __m512i decode16_table(const uint8_t *c, __m512i classpair, __m512i exppair,
                                     __m512i t0, __m512i t1, __m512i t2, __m512i t3) {
    __m512i b = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)c));
    __m512i t = _mm512_or_si512(b, _mm512_slli_epi32(b, 12));
    __m512i idx = _mm512_ternarylogic_epi32(t, _mm512_set1_epi32(0x000F000F), classpair, 0xEA);   // (t & mask) | class
    __m512i wa = _mm512_permutex2var_epi16(t0, idx, t1), wb = _mm512_permutex2var_epi16(t2, idx, t3);
    __m512i w = _mm512_mask_mov_epi16(wa, _mm512_test_epi16_mask(idx, _mm512_set1_epi16(0x40)), wb);
    return _mm512_mask_add_epi16(w, _mm512_test_epi16_mask(w, _mm512_set1_epi16(0x7FFF)), w, exppair);
}

// Two input pairs (64 code bytes: pairs kp, kp+1 of 32 rows) at once, with byte tables (VBMI):
// the nibbles are split once, a byte permute lays out (lo, lo, hi, hi) per row, the class is or-ed
// in, and two 128-entry byte lookups give each BF16 pattern's low and high bytes.
typedef struct { __m512i l0, l1, h0, h1, sel[4]; } table_regs;

__attribute__((target("avx512f,avx512bw,avx512vbmi")))
static inline table_regs load_table_regs(int reround) {
    table_regs t;
    const uint8_t *lo = bf16_low[reround ? 1 : 0], *hi = bf16_high[reround ? 1 : 0];
    t.l0 = _mm512_loadu_si512((const void *)lo); t.l1 = _mm512_loadu_si512((const void *)(lo + 64));
    t.h0 = _mm512_loadu_si512((const void *)hi); t.h1 = _mm512_loadu_si512((const void *)(hi + 64));
    for (int q = 0; q < 4; q++) {
        uint8_t idx[64];
        for (int j = 0; j < 16; j++) {
            int src = q * 16 + j;            // (pair q/2, rows 16·(q%2) + j) within the 64 code bytes
            idx[4 * j] = (uint8_t)src; idx[4 * j + 1] = (uint8_t)src;
            idx[4 * j + 2] = (uint8_t)(64 + src); idx[4 * j + 3] = (uint8_t)(64 + src);
        }
        t.sel[q] = _mm512_loadu_si512((const void *)idx);
    }
    return t;
}

// class·16 in every byte of each row's dword (16 rows), and E<<7 in both words (as meta16).
__attribute__((target("avx512f,avx512bw,avx512vbmi")))
static inline void meta16_bytes(const uint16_t *meta, __m512i *classbytes, __m512i *exppair) {
    __m512i classpair;
    meta16(meta, &classpair, exppair);
    *classbytes = _mm512_mullo_epi32(_mm512_and_si512(classpair, _mm512_set1_epi32(0xF0)), _mm512_set1_epi32(0x01010101));
}

__attribute__((target("avx512f,avx512bw,avx512vbmi")))
static inline void decode2_table(const uint8_t *c64, const table_regs *t, __m512i cA, __m512i eA, __m512i cB, __m512i eB, __m512i out[4]) {
    __m512i b = _mm512_loadu_si512((const void *)c64);
    __m512i lo = _mm512_and_si512(b, _mm512_set1_epi8(0x0F));
    __m512i hi = _mm512_and_si512(_mm512_srli_epi16(b, 4), _mm512_set1_epi8(0x0F));
    for (int q = 0; q < 4; q++) {
        __m512i idx = _mm512_or_si512(_mm512_permutex2var_epi8(lo, t->sel[q], hi), (q & 1) ? cB : cA);
        __m512i wl = _mm512_permutex2var_epi8(t->l0, idx, t->l1), wh = _mm512_permutex2var_epi8(t->h0, idx, t->h1);
        __m512i w = _mm512_mask_blend_epi8((__mmask64)0xAAAAAAAAAAAAAAAAull, wl, wh);
        out[q] = _mm512_mask_add_epi16(w, _mm512_test_epi16_mask(w, _mm512_set1_epi16(0x7FFF)), w, (q & 1) ? eB : eA);
    }
}

// ---- AVX-512 BF16 ----------------------------------------------------------------------------
// A decoded panel holds, per input pair, 32 dwords: (BF16 ŵ[2kp] low, BF16 ŵ[2kp+1] high) for
// rows j = 0 … 31; x is converted to BF16 pairs. vdpbf16ps then adds, per lane, the odd product and
// then the even one, each rounded to nearest even: the canonical order (both operands are exact in
// BF16 and their products exact in FP32, checked at load by fq_int4_bf16_exact).

__attribute__((target("avx512f,avx512bw")))
static inline __m512i bf16_pairs(__m512 lo, __m512 hi) {
    // exact values: the BF16 pattern is the FP32 pattern's upper half
    return _mm512_or_si512(_mm512_and_si512(_mm512_castps_si512(hi), _mm512_set1_epi32((int)0xFFFF0000u)),
                           _mm512_srli_epi32(_mm512_castps_si512(lo), 16));
}

__attribute__((target("avx512f,avx512bw")))
static void decode_bf16_avx512(const uint8_t *c, const float *sc, const uint16_t *meta, size_t k, size_t G, int reround, uint32_t *out) {
    if (meta) {
        const uint16_t *tab = bf16_table[reround ? 1 : 0];
        __m512i t0 = _mm512_loadu_si512((const void *)tab), t1 = _mm512_loadu_si512((const void *)(tab + 32));
        __m512i t2 = _mm512_loadu_si512((const void *)(tab + 64)), t3 = _mm512_loadu_si512((const void *)(tab + 96));
        for (size_t g = 0; g < k / G; g++) {
            __m512i c0, e0, c1, e1;
            meta16(meta + g * NR, &c0, &e0);
            meta16(meta + g * NR + 16, &c1, &e1);
            for (size_t kp = g * G / 2; kp < (g + 1) * G / 2; kp++) {
                _mm512_storeu_si512((void *)(out + kp * NR), decode16_table(c + kp * NR, c0, e0, t0, t1, t2, t3));
                _mm512_storeu_si512((void *)(out + kp * NR + 16), decode16_table(c + kp * NR + 16, c1, e1, t0, t1, t2, t3));
            }
        }
        return;
    }
    for (size_t g = 0; g < k / G; g++) {
        __m512 s0 = _mm512_loadu_ps(sc + g * NR), s1 = _mm512_loadu_ps(sc + g * NR + 16);
        for (size_t kp = g * G / 2; kp < (g + 1) * G / 2; kp++) {
            __m512 lo, hi;
            decode16_avx512(c + kp * NR, s0, reround, &lo, &hi);
            _mm512_storeu_si512((void *)(out + kp * NR), bf16_pairs(lo, hi));
            decode16_avx512(c + kp * NR + 16, s1, reround, &lo, &hi);
            _mm512_storeu_si512((void *)(out + kp * NR + 16), bf16_pairs(lo, hi));
        }
    }
}

#define MRB 12

__attribute__((target("avx512f,avx512bw,avx512bf16")))
static inline void store_bf(float *out, __m512 acc, __mmask16 mask) { _mm512_mask_storeu_ps(out, mask, acc); }

#define DP(a, xv, w) a = _mm512_dpbf16_ps(a, (__m512bh)(xv), (__m512bh)(w))

__attribute__((target("avx512f,avx512bw,avx512bf16")))
static void tile_bf16_full(const uint32_t *x, size_t ldx, const uint32_t *panel, size_t pairs,
                           float *y, size_t ldy, __mmask16 m0, __mmask16 m1) {
#define DECL(r) __m512 a##r##0 = _mm512_setzero_ps(), a##r##1 = _mm512_setzero_ps();
    DECL(0) DECL(1) DECL(2) DECL(3) DECL(4) DECL(5) DECL(6) DECL(7) DECL(8) DECL(9) DECL(10) DECL(11)
#undef DECL
    for (size_t kp = 0; kp < pairs; kp++) {
        __m512i w0 = _mm512_loadu_si512((const void *)(panel + kp * NR)), w1 = _mm512_loadu_si512((const void *)(panel + kp * NR + 16));
#define ROW(r) { __m512i xv = _mm512_set1_epi32((int)x[(r) * ldx + kp]); DP(a##r##0, xv, w0); DP(a##r##1, xv, w1); }
        ROW(0) ROW(1) ROW(2) ROW(3) ROW(4) ROW(5) ROW(6) ROW(7) ROW(8) ROW(9) ROW(10) ROW(11)
#undef ROW
    }
#define STORE(r) store_bf(y + (r) * ldy, a##r##0, m0); store_bf(y + (r) * ldy + 16, a##r##1, m1);
    STORE(0) STORE(1) STORE(2) STORE(3) STORE(4) STORE(5) STORE(6) STORE(7) STORE(8) STORE(9) STORE(10) STORE(11)
#undef STORE
}

__attribute__((target("avx512f,avx512bw,avx512bf16")))
static void tile_bf16_tail(const uint32_t *x, size_t ldx, size_t rows, const uint32_t *panel, size_t pairs,
                           float *y, size_t ldy, __mmask16 m0, __mmask16 m1) {
    for (size_t r0 = 0; r0 < rows; r0 += 4) {
        size_t nr = rows - r0 < 4 ? rows - r0 : 4;
        const uint32_t *xr = x + r0 * ldx;
        size_t s1 = nr > 1 ? ldx : 0, s2 = nr > 2 ? 2 * ldx : 0, s3 = nr > 3 ? 3 * ldx : 0;
        __m512 a00 = _mm512_setzero_ps(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00, a30 = a00, a31 = a00;
        for (size_t kp = 0; kp < pairs; kp++) {
            __m512i w0 = _mm512_loadu_si512((const void *)(panel + kp * NR)), w1 = _mm512_loadu_si512((const void *)(panel + kp * NR + 16));
            __m512i v0 = _mm512_set1_epi32((int)xr[kp]), v1 = _mm512_set1_epi32((int)xr[s1 + kp]);
            __m512i v2 = _mm512_set1_epi32((int)xr[s2 + kp]), v3 = _mm512_set1_epi32((int)xr[s3 + kp]);
            DP(a00, v0, w0); DP(a01, v0, w1); DP(a10, v1, w0); DP(a11, v1, w1);
            DP(a20, v2, w0); DP(a21, v2, w1); DP(a30, v3, w0); DP(a31, v3, w1);
        }
        float *yr = y + r0 * ldy;
        store_bf(yr, a00, m0); store_bf(yr + 16, a01, m1);
        if (nr > 1) { store_bf(yr + ldy, a10, m0); store_bf(yr + ldy + 16, a11, m1); }
        if (nr > 2) { store_bf(yr + 2 * ldy, a20, m0); store_bf(yr + 2 * ldy + 16, a21, m1); }
        if (nr > 3) { store_bf(yr + 3 * ldy, a30, m0); store_bf(yr + 3 * ldy + 16, a31, m1); }
    }
}

// One row (decode): the codes are decoded in registers, never written out.
__attribute__((target("avx512f,avx512bw,avx512bf16,avx512vbmi")))
static void gemv_bf16_direct(const uint32_t *x, const uint8_t *codes, const float *scales, const uint16_t *meta,
                             size_t n, size_t k, size_t G, int reround, size_t p0, size_t p1, float *y) {
    size_t pairs = k / 2, groups = k / G;
    const uint16_t *tab = bf16_table[reround ? 1 : 0];
    __m512i t0 = _mm512_loadu_si512((const void *)tab), t1 = _mm512_loadu_si512((const void *)(tab + 32));
    __m512i t2 = _mm512_loadu_si512((const void *)(tab + 64)), t3 = _mm512_loadu_si512((const void *)(tab + 96));
    size_t p = p0;
    if (meta && G % 4 == 0 && fq_cpu_has_avx512vbmi()) {
        table_regs tr = load_table_regs(reround);
        for (; p < p1; p++) {
            const uint8_t *c = codes + p * NR * pairs;
            const uint16_t *mt = meta + p * NR * groups;
            __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
            for (size_t g = 0; g < groups; g++) {
                __m512i cA, eA, cB, eB, w[4];
                meta16_bytes(mt + g * NR, &cA, &eA);
                meta16_bytes(mt + g * NR + 16, &cB, &eB);
                for (size_t kp = g * G / 2; kp < (g + 1) * G / 2; kp += 2) {
                    decode2_table(c + kp * NR, &tr, cA, eA, cB, eB, w);
                    __m512i x0 = _mm512_set1_epi32((int)x[kp]), x1 = _mm512_set1_epi32((int)x[kp + 1]);
                    DP(a0, x0, w[0]); DP(a1, x0, w[1]);
                    DP(a0, x1, w[2]); DP(a1, x1, w[3]);
                }
            }
            size_t col = p * NR, valid = n - col < NR ? n - col : NR;
            __mmask16 m0 = valid >= 16 ? 0xFFFF : (__mmask16)((1u << valid) - 1);
            __mmask16 m1 = valid <= 16 ? 0 : (valid >= 32 ? 0xFFFF : (__mmask16)((1u << (valid - 16)) - 1));
            store_bf(y + col, a0, m0);
            store_bf(y + col + 16, a1, m1);
        }
    }
    for (; p < p1; p++) {
        const uint8_t *c = codes + p * NR * pairs;
        __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
        if (meta) {
            const uint16_t *mt = meta + p * NR * groups;
            for (size_t g = 0; g < groups; g++) {
                __m512i c0, e0, c1, e1;
                meta16(mt + g * NR, &c0, &e0);
                meta16(mt + g * NR + 16, &c1, &e1);
                for (size_t kp = g * G / 2; kp < (g + 1) * G / 2; kp++) {
                    __m512i xv = _mm512_set1_epi32((int)x[kp]);
                    DP(a0, xv, decode16_table(c + kp * NR, c0, e0, t0, t1, t2, t3));
                    DP(a1, xv, decode16_table(c + kp * NR + 16, c1, e1, t0, t1, t2, t3));
                }
            }
        } else {
            const float *sc = scales + p * NR * groups;
            for (size_t g = 0; g < groups; g++) {
                __m512 s0 = _mm512_loadu_ps(sc + g * NR), s1 = _mm512_loadu_ps(sc + g * NR + 16);
                for (size_t kp = g * G / 2; kp < (g + 1) * G / 2; kp++) {
                    __m512 lo0, hi0, lo1, hi1;
                    decode16_avx512(c + kp * NR, s0, reround, &lo0, &hi0);
                    decode16_avx512(c + kp * NR + 16, s1, reround, &lo1, &hi1);
                    __m512i xv = _mm512_set1_epi32((int)x[kp]);
                    DP(a0, xv, bf16_pairs(lo0, hi0));
                    DP(a1, xv, bf16_pairs(lo1, hi1));
                }
            }
        }
        size_t col = p * NR, valid = n - col < NR ? n - col : NR;
        __mmask16 m0 = valid >= 16 ? 0xFFFF : (__mmask16)((1u << valid) - 1);
        __mmask16 m1 = valid <= 16 ? 0 : (valid >= 32 ? 0xFFFF : (__mmask16)((1u << (valid - 16)) - 1));
        store_bf(y + col, a0, m0);
        store_bf(y + col + 16, a1, m1);
    }
}
#undef DP

// x as BF16 pairs (x[2kp] low, x[2kp+1] high): exact, the caller guarantees BF16 values. In place
// is allowed (dst == src: pair kp is written after both its inputs were read, at index kp ≤ 2kp).
static void pack_bf16_pairs(const float *x, size_t k, uint32_t *dst) {
    const uint32_t *src = (const uint32_t *)x;
    for (size_t kp = 0; kp < k / 2; kp++) {
        uint32_t lo = src[2 * kp], hi = src[2 * kp + 1];
        dst[kp] = (lo >> 16) | (hi & 0xFFFF0000u);
    }
}

static void gemm_bf16_packed(const uint32_t *xb, size_t ldx, size_t m, const uint8_t *codes, const float *scales, const uint16_t *meta,
                             size_t n, size_t k, size_t G, int reround, size_t p0, size_t p1, float *y, size_t ldy) {
    build_tables();
    size_t pairs = k / 2, groups = k / G;
    if (m == 1) { gemv_bf16_direct(xb, codes, scales, meta, n, k, G, reround, p0, p1, y); return; }
    uint32_t *panel = (uint32_t *)fq_thread_buffer(FQ_BUFFER_PANEL, NR * pairs);
    for (size_t p = p0; p < p1; p++) {
        decode_bf16_avx512(codes + p * NR * pairs, scales + p * NR * groups, meta ? meta + p * NR * groups : NULL, k, G, reround, panel);
        size_t col = p * NR, valid = n - col < NR ? n - col : NR;
        fq_bf16_panel_rows(xb, ldx, m, panel, pairs, valid, y + col, ldy);
    }
}

static void gemm_bf16(const float *x, size_t ldx, size_t m, const uint8_t *codes, const float *scales, const uint16_t *meta,
                      size_t n, size_t k, size_t G, int reround, size_t p0, size_t p1, float *y, size_t ldy) {
    size_t pairs = k / 2;
    uint32_t *xb = (uint32_t *)fq_thread_buffer(FQ_BUFFER_X, m * pairs);
    for (size_t i = 0; i < m; i++) pack_bf16_pairs(x + i * ldx, k, xb + i * pairs);
    gemm_bf16_packed(xb, pairs, m, codes, scales, meta, n, k, G, reround, p0, p1, y, ldy);
}

void fq_bf16_panel_rows(const uint32_t *xb, size_t ldx, size_t m, const uint32_t *panel, size_t pairs, size_t valid,
                        float *y, size_t ldy) {
    __mmask16 m0 = valid >= 16 ? 0xFFFF : (__mmask16)((1u << valid) - 1);
    __mmask16 m1 = valid <= 16 ? 0 : (valid >= 32 ? 0xFFFF : (__mmask16)((1u << (valid - 16)) - 1));
    for (size_t i = 0; i < m; i += MRB) {
        size_t rows = m - i < MRB ? m - i : MRB;
        if (rows == MRB) tile_bf16_full(xb + i * ldx, ldx, panel, pairs, y + i * ldy, ldy, m0, m1);
        else tile_bf16_tail(xb + i * ldx, ldx, rows, panel, pairs, y + i * ldy, ldy, m0, m1);
    }
}

int fq_cpu_has_avx512vbmi(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512vbmi");
}

int fq_cpu_has_avx512bf16(void) {
    __builtin_cpu_init();
    return fq_cpu_isa_level() >= 2 && __builtin_cpu_supports("avx512bf16");
}

int fq_int4_level(int path, int bf16_ok) {
    int level = path >= 0 ? path : 3;
    if (level >= 3 && !(bf16_ok && fq_isa_level() >= 2 && fq_cpu_has_avx512bf16())) level = 2;
    if (level <= 2) level = fq_sgemm_level(level == 2 && path < 0 ? -1 : level);
    return level;
}

// ---- which many-row tile the automatic dispatch runs ---------------------------------------------
// The AVX-512 BF16 tile (vdpbf16ps on decoded BF16 panels) and the AVX-512F tile (FMA on decoded
// FP32 panels, inputs pair-swapped) compute the same canonical chains — the same bits (Int4FP8LinearTests)
// — but which is faster depends on the core: on Zen 4 vdpbf16ps does twice the FP32 FMA's
// multiply-adds per cycle; on Intel's Emerald Rapids it has one port where 512-bit FMA has two,
// and the whole eval ran 1.4× faster on the FP32 tile. So the first many-row call times both on
// one small GEMM (48 × 64 × 576, best of 5 each, alternating) and keeps the BF16 tile unless the
// FP32 one takes under 0.9× its time. FIREQ_INT4_TILE=bf16|fp32 overrides the measurement.
static double now_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int bf16_tile_probe(void) {
    enum { M = 48, N = 64, K = 576, G = 32 };
    static uint8_t codes[N * K / 2];
    static float scales[N * K / G], x[M * K], y[M * N];
    static uint16_t meta[N * K / G];
    static const float steps[8] = {0.015625f, 0.046875f, 0.078125f, 0.109375f, 0.0625f, 0.1875f, 0.3125f, 0.4375f};
    uint32_t r = 2463534242u;
    for (size_t i = 0; i < sizeof codes; i++) { r ^= r << 13; r ^= r >> 17; r ^= r << 5; codes[i] = (uint8_t)r; }
    for (size_t i = 0; i < N * K / G; i++) scales[i] = steps[i % 8];
    for (size_t i = 0; i < M * K; i++) { r ^= r << 13; r ^= r >> 17; r ^= r << 5; x[i] = (float)((int)(r % 15) - 7) * 0.25f; }
    const uint16_t *mt = fq_int4_meta(scales, N * K / G, 1, meta) ? meta : NULL;
    double best[2] = {1e9, 1e9};
    for (int rep = 0; rep < 6; rep++) {
        for (int which = 0; which < 2; which++) {
            double t0 = now_seconds();
            fq_int4_gemm_on(which == 0 ? 3 : 2, x, K, M, codes, scales, mt, N, K, G, 1, 1, 0, N / 32, y, N);
            double dt = now_seconds() - t0;
            if (rep > 0 && dt < best[which]) best[which] = dt;  // the first round warms the buffers
        }
    }
    return best[1] < 0.9 * best[0] ? 0 : 1;
}

static int bf16_tile_state = 1;
static pthread_once_t bf16_tile_once = PTHREAD_ONCE_INIT;

static void bf16_tile_decide(void) {
    const char *e = getenv("FIREQ_INT4_TILE");
    if (e && strcmp(e, "bf16") == 0) bf16_tile_state = 1;
    else if (e && strcmp(e, "fp32") == 0) bf16_tile_state = 0;
    else bf16_tile_state = fq_int4_level(-1, 1) >= 3 ? bf16_tile_probe() : 1;
}

int fq_int4_bf16_tile_preferred(void) {
    pthread_once(&bf16_tile_once, bf16_tile_decide);  // one probe per process, whichever thread asks first
    return bf16_tile_state;
}

int fq_int4_level_rows(int path, int bf16_ok, size_t m) {
    int level = fq_int4_level(path, bf16_ok);
    if (path < 0 && m > 1 && level >= 3 && !fq_int4_bf16_tile_preferred()) level = fq_sgemm_level(-1);
    return level;
}

void fq_int4_gemm_on(int path, const float *x, size_t ldx, size_t m, const uint8_t *codes, const float *scales, const uint16_t *meta,
                     size_t n, size_t k, size_t G, int reround, int bf16_ok, size_t p0, size_t p1, float *y, size_t ldy) {
    if (m == 0 || p0 >= p1) return;
    int level = fq_int4_level_rows(path, bf16_ok, m);
    if (level >= 3) gemm_bf16(x, ldx, m, codes, scales, meta, n, k, G, reround, p0, p1, y, ldy);
    else gemm_f32_paths(level, x, ldx, m, codes, scales, meta, n, k, G, reround, p0, p1, y, ldy);
}

void fq_int4_gemm(const float *x, size_t ldx, size_t m, const uint8_t *codes, const float *scales, const uint16_t *meta,
                  size_t n, size_t k, size_t G, int reround, int bf16_ok, size_t p0, size_t p1, float *y, size_t ldy) {
    fq_int4_gemm_on(-1, x, ldx, m, codes, scales, meta, n, k, G, reround, bf16_ok, p0, p1, y, ldy);
}

// ---- x prepared once per call of a many-row linear (not once per thread and chunk) -------------
void fq_int4_prepare_rows(int level, float *x, size_t ldx, size_t r0, size_t r1, size_t k) {
    for (size_t i = r0; i < r1; i++) {
        float *row = x + i * ldx;
        if (level >= 3) pack_bf16_pairs(row, k, (uint32_t *)row);
        else fq_swap_pairs(level, row, row, k);
    }
}

void fq_int4_gemm_prepared(int level, const float *xp, size_t ldx, size_t m, const uint8_t *codes, const float *scales,
                           const uint16_t *meta, size_t n, size_t k, size_t G, int reround, size_t p0, size_t p1, float *y, size_t ldy) {
    if (m == 0 || p0 >= p1) return;
    if (level >= 3) gemm_bf16_packed((const uint32_t *)xp, ldx, m, codes, scales, meta, n, k, G, reround, p0, p1, y, ldy);
    else gemm_f32_swapped(level, xp, ldx, m, codes, scales, n, k, G, reround, p0, p1, y, ldy);
}
