#ifndef CFIREQ_KERNELS_H
#define CFIREQ_KERNELS_H
#include <stddef.h>
#include <stdint.h>

/// Which instruction-set level the dispatcher picked (for reports): 0 portable, 1 AVX2+F16C, 2 AVX-512.
int fq_isa_level(void);

/// Widen n IEEE binary16 values to float32 (exact). Dispatches F16C / portable at run time.
void fq_f16_to_f32(const uint16_t *src, float *dst, size_t n);
/// Widen n bfloat16 values to float32 (exact).
void fq_bf16_to_f32(const uint16_t *src, float *dst, size_t n);

/// Portable references of the two conversions above (tests pin the fast paths to these).
void fq_f16_to_f32_ref(const uint16_t *src, float *dst, size_t n);
void fq_bf16_to_f32_ref(const uint16_t *src, float *dst, size_t n);

/// In-place numerically stable softmax over n floats (max-subtracted, FP32 sums).
/// Returns nothing; row sums to 1 up to rounding.
void fq_softmax_inplace(float *x, size_t n);

/// log(sum(exp(x))) over n floats: max shift, float expf, double accumulation.
double fq_logsumexp(const float *x, size_t n);

/// out[i] = silu(gate[i]) * up[i] for n values; silu(g) = g / (1 + exp(-g)).
void fq_swiglu(const float *gate, const float *up, float *out, size_t n);

#endif
