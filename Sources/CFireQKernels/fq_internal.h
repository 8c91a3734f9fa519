// Helpers shared by the kernel files (not part of the public header).
#ifndef FQ_INTERNAL_H
#define FQ_INTERNAL_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/// FP32 bit patterns (memcpy: no aliasing questions).
static inline float bits_to_float(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static inline uint32_t float_to_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

/// The FP32 GEMM path actually used for a requested path (-1 automatic): 0 portable, 1 AVX2+FMA,
/// 2 AVX-512F, never above the CPU's (or FIREQ_ISA's) level.
int fq_sgemm_level(int path);
/// One 32-column panel ([k][32] floats) against m rows of x on a resolved level: the FP32 GEMM's
/// fmaf chain over k = 0 … k−1 from 0 for each of the `valid` columns.
void fq_sgemm_panel(int level, const float *x, size_t ldx, size_t m, const float *panel, size_t valid, size_t k,
                    float *y, size_t ldy, int accumulate);
/// A per-thread scratch buffer of at least `count` floats (64-byte aligned), kept for reuse.
enum { FQ_BUFFER_PANEL = 0, FQ_BUFFER_X = 1 };
float *fq_thread_buffer(int slot, size_t count);
/// dst[k'] = src[k' XOR 1] for k' < k (k even): the pair-swapped input order of the FP32 paths'
/// canonical chain, on a resolved level (int4gemm.c).
void fq_swap_pairs(int level, const float *src, float *dst, size_t k);
/// AVX-512 BF16 (int4gemm.c; the CPU must have it): y[i, 0 … valid) = the pair chains (vdpbf16ps)
/// of m rows of x as BF16 pairs (rows ldx pairs apart) against one decoded panel ([pairs][32] BF16
/// pairs, low word the even input); y rows ldy apart.
void fq_bf16_panel_rows(const uint32_t *xb, size_t ldx, size_t m, const uint32_t *panel, size_t pairs, size_t valid,
                        float *y, size_t ldy);

#include <immintrin.h>
// E4M3 rounding of finite floats, vectorised (ties to even, saturating at ±448), bit for bit as
// fq_round_e4m3_ref: below 2^-6 add and subtract 1.5·2^14 (quantum 2^-9), above keep 3 mantissa
// bits with an integer round-to-nearest-even on the 20 dropped bits.
__attribute__((target("avx2,fma")))
static inline __m256 fq_e4m3_avx2(__m256 v) {
    const __m256i absmask = _mm256_set1_epi32(0x7FFFFFFF), signmask = _mm256_set1_epi32((int)0x80000000u);
    __m256i b = _mm256_castps_si256(v);
    __m256i a = _mm256_and_si256(b, absmask), sign = _mm256_and_si256(b, signmask);
    __m256 ax = _mm256_castsi256_ps(a);
    __m256 sub = _mm256_sub_ps(_mm256_add_ps(ax, _mm256_set1_ps(24576.0f)), _mm256_set1_ps(24576.0f));
    __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(a, 20), _mm256_set1_epi32(1));
    __m256i nor = _mm256_and_si256(_mm256_add_epi32(_mm256_add_epi32(a, _mm256_set1_epi32(0x7FFFF)), lsb), _mm256_set1_epi32((int)0xFFF00000u));
    __m256 r = _mm256_blendv_ps(_mm256_castsi256_ps(nor), sub, _mm256_cmp_ps(ax, _mm256_set1_ps(0x1p-6f), _CMP_LT_OQ));
    r = _mm256_min_ps(r, _mm256_set1_ps(448.0f));
    return _mm256_or_ps(r, _mm256_castsi256_ps(sign));
}

__attribute__((target("avx512f,avx512bw")))
static inline __m512 fq_e4m3_avx512(__m512 v) {
    __m512i b = _mm512_castps_si512(v);
    __m512i a = _mm512_and_si512(b, _mm512_set1_epi32(0x7FFFFFFF)), sign = _mm512_and_si512(b, _mm512_set1_epi32((int)0x80000000u));
    __m512 ax = _mm512_castsi512_ps(a);
    __m512 sub = _mm512_sub_ps(_mm512_add_ps(ax, _mm512_set1_ps(24576.0f)), _mm512_set1_ps(24576.0f));
    __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(a, 20), _mm512_set1_epi32(1));
    __m512i nor = _mm512_and_si512(_mm512_add_epi32(_mm512_add_epi32(a, _mm512_set1_epi32(0x7FFFF)), lsb), _mm512_set1_epi32((int)0xFFF00000u));
    __mmask16 small = _mm512_cmp_ps_mask(ax, _mm512_set1_ps(0x1p-6f), _CMP_LT_OQ);
    __m512 r = _mm512_min_ps(_mm512_mask_blend_ps(small, _mm512_castsi512_ps(nor), sub), _mm512_set1_ps(448.0f));
    return _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(r), sign));
}
#endif
