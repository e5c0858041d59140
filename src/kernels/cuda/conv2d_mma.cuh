#pragma once
// The tile machinery of the bf16 tensor-core convolutions (conv2d_mma_bf16.cu): inline-PTX
// wrappers for cp.async, ldmatrix and mma.sync, and the XOR swizzle of the shared-memory
// tiles. Device code only; the ops and their shape rules are declared in ops.hpp.
//
// Every operand tile is stored as rows of 16-byte chunks (8 bf16 each). ldmatrix reads one
// 8x8 matrix as 8 rows x one 16-byte chunk; without a swizzle, 8 rows of the same chunk
// column share a few of the 32 banks. Chunk c of row r is therefore stored at chunk position
// c ^ f(r), where f spreads any 8 consecutive rows over the 8 distinct 16-byte bank groups of
// a 128-byte line:
//   rows of 4 chunks (64 bytes, two rows per line):  f(r) = (r >> 1) & 3
//   rows of 8 chunks (128 bytes, one row per line):  f(r) = r & 7
// (for 4 chunks: rows r and r+1 fill the two halves of a line, and (r >> 1) & 3 gives 4
// distinct chunk positions within each half for the 4 line pairs of 8 rows.)
#include <cstdint>

namespace cnn::cuda::mma {

constexpr int kChunkElems = 8;  // bf16 per 16-byte chunk

// Byte offset of chunk `chunk` of row `row` in a tile of `kChunks` chunks per row.
template <int kChunks>
__device__ __forceinline__ uint32_t swizzled_offset(int row, int chunk) {
  static_assert(kChunks == 4 || kChunks == 8, "swizzle: 4 or 8 chunks per row");
  const int f = kChunks == 4 ? (row >> 1) & 3 : row & 7;
  return uint32_t((row * kChunks + (chunk ^ f)) * 16);
}

__device__ __forceinline__ uint32_t shared_address(const void* p) {
  return uint32_t(__cvta_generic_to_shared(p));
}

// 16 bytes global -> shared, bypassing L1 (.cg). valid = false copies nothing and fills the
// 16 bytes with zeros (src-size 0), which is how padding and ragged edges are handled; `src`
// must still be a valid address then (callers pass the tensor's base).
__device__ __forceinline__ void copy_16_bytes_async(uint32_t dst, const void* src, bool valid) {
  const int src_size = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(src_size) : "memory");
}
__device__ __forceinline__ void commit_async_copies() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
// Waits until at most `kPending` committed groups are still in flight.
template <int kPending>
__device__ __forceinline__ void wait_async_copies() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending) : "memory");
}

// Four 8x8 bf16 matrices; lane l gives the address of row l % 8 of matrix l / 8 and gets, of
// each matrix i, row l / 4, columns 2 (l % 4) and +1 in r[i] (.trans: the transposed matrix).
__device__ __forceinline__ void load_matrix_x4(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
__device__ __forceinline__ void load_matrix_x4_trans(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

// d += a . b for one 16x8 fp32 tile, a 16x16 bf16 (row-major), b 16x8 bf16 (column-major).
// Fragments (g = lane / 4, t = lane % 4): a = {(g, 2t..), (g+8, 2t..), (g, 2t+8..), (g+8, 2t+8..)},
// b = {(k 2t.., n g), (k 2t+8.., n g)}, d = {(g, 2t), (g, 2t+1), (g+8, 2t), (g+8, 2t+1)}.
__device__ __forceinline__ void mma_bf16_16x8x16(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// d += a . b for one 16x8 fp32 tile, a 16x8 tf32 (row-major), b 8x8 tf32 (column-major); the
// operands are fp32 bit patterns whose low 13 bits the tensor cores ignore. Fragments:
// a = {(g, t), (g+8, t), (g, t+4), (g+8, t+4)}, b = {(k t, n g), (k t+4, n g)}, d as above.
__device__ __forceinline__ void mma_tf32_16x8x8(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

}  // namespace cnn::cuda::mma
