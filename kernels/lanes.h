// Vector lanes for the fixed-order kernels: one struct per instruction set, all with the same
// members, so that one kernel template serves every width (as XNNPACK's generated variants do).
// Every arithmetic step is MulAdd, a fused multiply-add (one rounding), on every path.
// LoadPartial and StorePartial touch the first n lanes only (a channel tail); the others
// load as 0.
//
// Each kernels_<isa>.cc includes this under its own compiler flags; the anonymous namespace
// gives each translation unit its own copy, so no code built for one instruction set is
// linked into another's.
#ifndef REPROSEG_KERNELS_LANES_H_
#define REPROSEG_KERNELS_LANES_H_

#include <immintrin.h>

#include <cmath>

namespace reproseg_fixed_order {
namespace {

// One lane: the scalar reference, and every path's channel tail.
struct ScalarLanes {
  using Reg = float;
  static constexpr int kLanes = 1;
  static constexpr int kBlockVectors = 1;  // vectors per register block (channels)
  static Reg Zero() { return 0.0f; }
  static Reg Load(const float* p) { return *p; }
  static void Store(float* p, Reg v) { *p = v; }
  static Reg Broadcast(float v) { return v; }
  static Reg MulAdd(Reg a, Reg b, Reg c) { return std::fma(a, b, c); }
  static Reg LoadPartial(const float* p, int) { return *p; }
  static void StorePartial(float* p, Reg v, int) { *p = v; }
};

#if defined(__AVX2__) && defined(__FMA__)
struct Avx2Lanes {
  using Reg = __m256;
  static constexpr int kLanes = 8;
  static constexpr int kBlockVectors = 2;  // 4 pixels x 2 vectors: 8 of 16 ymm registers
  static Reg Zero() { return _mm256_setzero_ps(); }
  static Reg Load(const float* p) { return _mm256_loadu_ps(p); }
  static void Store(float* p, Reg v) { _mm256_storeu_ps(p, v); }
  static Reg Broadcast(float v) { return _mm256_set1_ps(v); }
  static Reg MulAdd(Reg a, Reg b, Reg c) { return _mm256_fmadd_ps(a, b, c); }
  static __m256i Mask(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static Reg LoadPartial(const float* p, int n) { return _mm256_maskload_ps(p, Mask(n)); }
  static void StorePartial(float* p, Reg v, int n) { _mm256_maskstore_ps(p, Mask(n), v); }
};
#endif

#if defined(__AVX512F__)
struct Avx512Lanes {
  using Reg = __m512;
  static constexpr int kLanes = 16;
  static constexpr int kBlockVectors = 4;  // 4 pixels x 4 vectors: 16 of 32 zmm registers
  static Reg Zero() { return _mm512_setzero_ps(); }
  static Reg Load(const float* p) { return _mm512_loadu_ps(p); }
  static void Store(float* p, Reg v) { _mm512_storeu_ps(p, v); }
  static Reg Broadcast(float v) { return _mm512_set1_ps(v); }
  static Reg MulAdd(Reg a, Reg b, Reg c) { return _mm512_fmadd_ps(a, b, c); }
  static __mmask16 Mask(int n) { return static_cast<__mmask16>((1u << n) - 1); }
  static Reg LoadPartial(const float* p, int n) { return _mm512_maskz_loadu_ps(Mask(n), p); }
  static void StorePartial(float* p, Reg v, int n) { _mm512_mask_storeu_ps(p, Mask(n), v); }
};
#endif

}  // namespace
}  // namespace reproseg_fixed_order

#endif  // REPROSEG_KERNELS_LANES_H_
