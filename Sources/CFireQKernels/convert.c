// Bulk 16-bit -> float32 widening with run-time ISA dispatch.
#include "CFireQKernels.h"
#include <stdlib.h>
#include <string.h>
#include <string.h>
#include <immintrin.h>

static float f16_scalar(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1Fu;
    uint32_t man = h & 0x3FFu;
    uint32_t bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else {                       // subnormal: normalise
            int e = -1;
            do { man <<= 1; e++; } while ((man & 0x400u) == 0);
            man &= 0x3FFu;
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | (man << 13);
        }
    } else if (exp == 0x1F) {
        bits = sign | 0x7F800000u | (man << 13);   // Inf / NaN (payload kept)
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

void fq_f16_to_f32_ref(const uint16_t *src, float *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = f16_scalar(src[i]);
}

void fq_bf16_to_f32_ref(const uint16_t *src, float *dst, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint32_t bits = (uint32_t)src[i] << 16;
        memcpy(&dst[i], &bits, 4);
    }
}

__attribute__((target("avx2,f16c")))
static void f16_to_f32_f16c(const uint16_t *src, float *dst, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i h = _mm_loadu_si128((const __m128i *)(src + i));
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
    }
    fq_f16_to_f32_ref(src + i, dst + i, n - i);
}

__attribute__((target("avx2")))
static void bf16_to_f32_avx2(const uint16_t *src, float *dst, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i h = _mm_loadu_si128((const __m128i *)(src + i));
        __m256i w = _mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16);
        _mm256_storeu_si256((__m256i *)(dst + i), w);
    }
    fq_bf16_to_f32_ref(src + i, dst + i, n - i);
}

int fq_cpu_isa_level(void) {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")) return 2;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c") && __builtin_cpu_supports("fma")) return 1;
    return 0;
}

int fq_isa_requested(void) {
    const char *e = getenv("FIREQ_ISA");
    if (e == NULL || *e == 0) return -1;
    if (strcmp(e, "portable") == 0) return 0;
    if (strcmp(e, "avx2") == 0) return 1;
    if (strcmp(e, "avx512") == 0) return 2;
    return -2;
}

int fq_isa_level(void) {
    // Read once; every caller sees the same level (a benign race writes the same value).
    static volatile int cached = -1;
    int c = cached;
    if (c >= 0) return c;
    int hw = fq_cpu_isa_level(), want = fq_isa_requested();
    c = (want >= 0 && want < hw) ? want : hw;
    cached = c;
    return c;
}

void fq_f16_to_f32(const uint16_t *src, float *dst, size_t n) {
    if (fq_isa_level() >= 1) f16_to_f32_f16c(src, dst, n);
    else fq_f16_to_f32_ref(src, dst, n);
}

void fq_bf16_to_f32(const uint16_t *src, float *dst, size_t n) {
    if (fq_isa_level() >= 1) bf16_to_f32_avx2(src, dst, n);
    else fq_bf16_to_f32_ref(src, dst, n);
}
