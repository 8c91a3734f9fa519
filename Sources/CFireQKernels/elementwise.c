// Elementwise helpers of the FP32 reference forward pass: exp, softmax, SwiGLU, logsumexp.
//
// exp is the Cephes single-precision algorithm (≤ 2 ulp on the clamped range): the AVX2+FMA
// path and the portable path run the same operation sequence (FMAs as fmaf, no contraction), so
// they agree bit for bit; sums use 8 fixed lanes in both, so results do not depend on the ISA.
#pragma STDC FP_CONTRACT OFF
#include "CFireQKernels.h"
#include <math.h>
#include <immintrin.h>

#define EXP_HI 88.0f            // exp(88) = 1.65e38, below FLT_MAX; larger inputs clamp here
#define EXP_LO (-87.33654f)     // ≈ log(2^-126): the result stays a normal float
#define LOG2E 1.44269504088896341f
#define ROUND_MAGIC 12582912.0f // 1.5 · 2^23: adding and subtracting it rounds to an integer
#define C1 0.693359375f
#define C2 (-2.12194440e-4f)
#define P0 1.9875691500e-4f
#define P1 1.3981999507e-3f
#define P2 8.3334519073e-3f
#define P3 4.1665795894e-2f
#define P4 1.6666665459e-1f
#define P5 5.0000001201e-1f

float fq_expf_ref(float x) {
    x = x > EXP_HI ? EXP_HI : x;
    x = x < EXP_LO ? EXP_LO : x;
    if (x != x) return x;
    float t = x * LOG2E;
    float n = t + ROUND_MAGIC;
    n = n - ROUND_MAGIC;
    float r = fmaf(n, -C1, x);
    r = fmaf(n, -C2, r);
    float p = P0;
    p = fmaf(p, r, P1); p = fmaf(p, r, P2); p = fmaf(p, r, P3); p = fmaf(p, r, P4); p = fmaf(p, r, P5);
    float r2 = r * r;
    float y = fmaf(p, r2, r);
    y = y + 1.0f;
    int e = (int)n + 127;
    union { unsigned u; float f; } s = { (unsigned)e << 23 };
    return y * s.f;
}

__attribute__((target("avx2,fma")))
static inline __m256 exp8(__m256 x) {
    __m256 nanmask = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
    __m256 xin = x;
    x = _mm256_min_ps(x, _mm256_set1_ps(EXP_HI));
    x = _mm256_max_ps(x, _mm256_set1_ps(EXP_LO));
    __m256 t = _mm256_mul_ps(x, _mm256_set1_ps(LOG2E));
    __m256 n = _mm256_add_ps(t, _mm256_set1_ps(ROUND_MAGIC));
    n = _mm256_sub_ps(n, _mm256_set1_ps(ROUND_MAGIC));
    __m256 r = _mm256_fmadd_ps(n, _mm256_set1_ps(-C1), x);
    r = _mm256_fmadd_ps(n, _mm256_set1_ps(-C2), r);
    __m256 p = _mm256_set1_ps(P0);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P1));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P2));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P4));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P5));
    __m256 r2 = _mm256_mul_ps(r, r);
    __m256 y = _mm256_fmadd_ps(p, r2, r);
    y = _mm256_add_ps(y, _mm256_set1_ps(1.0f));
    __m256i e = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
    __m256 s = _mm256_castsi256_ps(_mm256_slli_epi32(e, 23));
    y = _mm256_mul_ps(y, s);
    return _mm256_blendv_ps(y, xin, nanmask);
}

__attribute__((target("avx2,fma")))
static void exp_shift_avx2(const float *x, float shift, float *out, size_t n) {
    size_t i = 0;
    __m256 s = _mm256_set1_ps(shift);
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), s)));
    for (; i < n; i++) out[i] = fq_expf_ref(x[i] - shift);
}

// AVX-512F: exp8's operation sequence 16 lanes wide (the same bits); the last n mod 16 values in a
// masked vector (inactive lanes compute exp(0 − shift) and are not stored).
__attribute__((target("avx512f")))
static inline __m512 exp16(__m512 x) {
    __mmask16 nanmask = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
    __m512 xin = x;
    x = _mm512_min_ps(x, _mm512_set1_ps(EXP_HI));
    x = _mm512_max_ps(x, _mm512_set1_ps(EXP_LO));
    __m512 t = _mm512_mul_ps(x, _mm512_set1_ps(LOG2E));
    __m512 n = _mm512_add_ps(t, _mm512_set1_ps(ROUND_MAGIC));
    n = _mm512_sub_ps(n, _mm512_set1_ps(ROUND_MAGIC));
    __m512 r = _mm512_fmadd_ps(n, _mm512_set1_ps(-C1), x);
    r = _mm512_fmadd_ps(n, _mm512_set1_ps(-C2), r);
    __m512 p = _mm512_set1_ps(P0);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(P1));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(P2));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(P3));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(P4));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(P5));
    __m512 r2 = _mm512_mul_ps(r, r);
    __m512 y = _mm512_fmadd_ps(p, r2, r);
    y = _mm512_add_ps(y, _mm512_set1_ps(1.0f));
    __m512i e = _mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127));
    y = _mm512_mul_ps(y, _mm512_castsi512_ps(_mm512_slli_epi32(e, 23)));
    return _mm512_mask_blend_ps(nanmask, y, xin);
}

__attribute__((target("avx512f")))
static void exp_shift_avx512(const float *x, float shift, float *out, size_t n) {
    size_t i = 0;
    __m512 s = _mm512_set1_ps(shift);
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(out + i, exp16(_mm512_sub_ps(_mm512_loadu_ps(x + i), s)));
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(out + i, m, exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), s)));
    }
}

static void exp_shift_ref(const float *x, float shift, float *out, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = fq_expf_ref(x[i] - shift);
}

void fq_exp_shift_on(int path, const float *x, float shift, float *out, size_t n) {
    int level = path >= 0 ? path : 2;
    if (level >= 2 && fq_isa_level() >= 2) exp_shift_avx512(x, shift, out, n);
    else if (level >= 1 && fq_isa_level() >= 1) exp_shift_avx2(x, shift, out, n);
    else exp_shift_ref(x, shift, out, n);
}

/// out[i] = exp(x[i] − shift) for n values (out may equal x).
void fq_exp_shift(const float *x, float shift, float *out, size_t n) { fq_exp_shift_on(-1, x, shift, out, n); }

/// Sum of n floats in 8 fixed lanes (lane j takes elements i ≡ j mod 8), lanes combined pairwise.
static float lane_sum(const float *x, size_t n) {
    float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) s[j] += x[i + j];
    for (int j = 0; i < n; i++, j++) s[j] += x[i];
    return ((s[0] + s[4]) + (s[2] + s[6])) + ((s[1] + s[5]) + (s[3] + s[7]));
}

static float max_of(const float *x, size_t n) {
    float m = x[0];
    for (size_t i = 1; i < n; i++) m = x[i] > m ? x[i] : m;
    return m;
}

// max_of in 16 lanes: vmaxps(v, m) returns m when v is NaN or equal (±0), as `x > m ? x : m` keeps
// m, so each lane is max_of of its subsequence; lanes and the seed x[0] are then folded the same
// way. The maximum of a set without NaN is the same value whatever the order; with NaN only a
// NaN x[0] propagates, in both (a ±0 tie may pick the other zero: exp(x − m) is the same).
__attribute__((target("avx512f")))
static float max_of_avx512(const float *x, size_t n) {
    if (n < 32) return max_of(x, n);
    __m512 m = _mm512_set1_ps(x[0]);
    size_t i = 1;
    for (; i + 16 <= n; i += 16) m = _mm512_max_ps(_mm512_loadu_ps(x + i), m);
    float lanes[16], r = x[0];
    _mm512_storeu_ps(lanes, m);
    for (int j = 0; j < 16; j++) r = lanes[j] > r ? lanes[j] : r;
    for (; i < n; i++) r = x[i] > r ? x[i] : r;
    return r;
}

void fq_softmax_inplace(float *x, size_t n) { fq_softmax_inplace_on(-1, x, n); }

void fq_softmax_inplace_on(int path, float *x, size_t n) {
    if (n == 0) return;
    int level = path >= 0 ? path : 2;
    float m = level >= 2 && fq_isa_level() >= 2 ? max_of_avx512(x, n) : max_of(x, n);
    fq_exp_shift_on(path, x, m, x, n);
    float inv = 1.0f / lane_sum(x, n);
    for (size_t i = 0; i < n; i++) x[i] *= inv;
}

double fq_logsumexp(const float *x, size_t n) {
    if (n == 0) return -INFINITY;
    float m = fq_isa_level() >= 2 ? max_of_avx512(x, n) : max_of(x, n);
    float tmp[1024];
    double total = 0.0;
    for (size_t i = 0; i < n; i += 1024) {
        size_t c = n - i < 1024 ? n - i : 1024;
        fq_exp_shift(x + i, m, tmp, c);
        total += (double)lane_sum(tmp, c);
    }
    return (double)m + log(total);
}

void fq_swiglu(const float *gate, const float *up, float *out, size_t n) {
    // out = g / (1 + exp(−g)) · u, with exp(−g) computed as exp_shift(g·(−1), 0).
    float tmp[1024];
    for (size_t i = 0; i < n; i += 1024) {
        size_t c = n - i < 1024 ? n - i : 1024;
        for (size_t j = 0; j < c; j++) tmp[j] = -gate[i + j];
        fq_exp_shift(tmp, 0.0f, tmp, c);
        for (size_t j = 0; j < c; j++) out[i + j] = gate[i + j] / (1.0f + tmp[j]) * up[i + j];
    }
}

void fq_geglu_tanh(const float *gate, const float *up, float *out, size_t n) {
    const float beta = 0.7978845608028654f, kappa = 0.044715f;   // √(2/π), as torch's kBeta
    float tmp[1024];
    for (size_t i = 0; i < n; i += 1024) {
        size_t c = n - i < 1024 ? n - i : 1024;
        for (size_t j = 0; j < c; j++) {
            float g = gate[i + j];
            tmp[j] = -2.0f * (beta * (g + kappa * (g * g * g)));
        }
        fq_exp_shift(tmp, 0.0f, tmp, c);
        for (size_t j = 0; j < c; j++) out[i + j] = gate[i + j] / (1.0f + tmp[j]) * up[i + j];
    }
}

double fq_kl_logits(const float *p, double lse_p, const float *q, double lse_q, size_t n) {
    // KL(P‖Q) = Σ_i P_i (log P_i − log Q_i), log P_i = p_i − lse_p, log Q_i = q_i − lse_q.
    // P_i = exp(p_i − lse_p) in blocks (vectorised exp); each block's terms are summed in double.
    float tmp[1024];
    double total = 0.0;
    const float shift = (float)lse_p;
    const double dl = lse_q - lse_p;
    for (size_t i = 0; i < n; i += 1024) {
        size_t c = n - i < 1024 ? n - i : 1024;
        fq_exp_shift(p + i, shift, tmp, c);
        double s = 0.0;
        for (size_t j = 0; j < c; j++) s += (double)tmp[j] * ((double)p[i + j] - (double)q[i + j] + dl);
        total += s;
    }
    return total > 0.0 ? total : 0.0;
}

size_t fq_argmax(const float *x, size_t n) {
    size_t best = 0;
    for (size_t i = 1; i < n; i++) if (x[i] > x[best]) best = i;
    return best;
}
