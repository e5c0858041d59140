#pragma once
// CNN_HOST_DEVICE marks a function written once for the CPU and the GPU (random.hpp,
// augment_map.hpp, formulas/): under nvcc it is host and device code, elsewhere plain C++.
// Forced inline on both sides: no call inside a kernel, and no out-of-line copy in the
// fast-path objects (compiled for AVX-512 / AVX2) that the linker could hand to the
// reference code.
#if defined(__CUDACC__)
#define CNN_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define CNN_HOST_DEVICE inline __attribute__((always_inline))
#endif
