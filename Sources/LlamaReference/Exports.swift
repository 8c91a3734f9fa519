// The reference pass is built on the shared kernels (buffers, packed GEMM, parallel loops);
// re-exported so users of LlamaReference see them without a second import.
@_exported import Kernels
