// Elementwise helpers of the FP32 reference forward pass (softmax, SwiGLU, logsumexp).
// Plain C with libm: compiled once for baseline x86-64; the compiler vectorises what it can.
#include "CFireQKernels.h"
#include <math.h>

void fq_softmax_inplace(float *x, size_t n) {
    if (n == 0) return;
    float m = x[0];
    for (size_t i = 1; i < n; i++) m = x[i] > m ? x[i] : m;
    float s = 0.0f;
    for (size_t i = 0; i < n; i++) { float e = expf(x[i] - m); x[i] = e; s += e; }
    float inv = 1.0f / s;
    for (size_t i = 0; i < n; i++) x[i] *= inv;
}

double fq_logsumexp(const float *x, size_t n) {
    if (n == 0) return -INFINITY;
    float m = x[0];
    for (size_t i = 1; i < n; i++) m = x[i] > m ? x[i] : m;
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)expf(x[i] - m);
    return (double)m + log(s);
}

void fq_swiglu(const float *gate, const float *up, float *out, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}
