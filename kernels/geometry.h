// The shapes of one 2-D convolution, shared by every kernel and instruction set.
#ifndef REPROSEG_KERNELS_GEOMETRY_H_
#define REPROSEG_KERNELS_GEOMETRY_H_

#include <cstdint>

namespace reproseg_fixed_order {

// A convolution from x [batch, in_h, in_w, in_c] to y [batch, out_h, out_w, out_c] (NHWC,
// row-major), with filter taps k_h x k_w. Output pixel (oh, ow) reads input pixel
// (oh * stride_h - pad_top + kh, ow * stride_w - pad_left + kw) for tap (kh, kw); taps that
// fall outside the input (in the padding) are not part of any sum. For a depthwise
// convolution out_c == in_c.
struct ConvGeometry {
  int64_t batch, in_h, in_w, in_c;
  int64_t out_h, out_w, out_c;
  int64_t k_h, k_w;
  int64_t stride_h, stride_w;
  int64_t pad_top, pad_left;
};

// One instruction set's kernels. Each runs the work units [begin, end) of its operation;
// units write disjoint outputs and any split of them gives the same bits (docs/determinism.md,
// "The fixed-order kernels", states the order of every sum).
struct KernelTable {
  const char* name;
  // Conv2D forward. x [N,H,W,CI], w [KH,KW,CI,CO] -> y [N,OH,OW,CO]; units: N*OH rows.
  void (*conv_forward)(const ConvGeometry&, const float* x, const float* w, float* y,
                       int64_t begin, int64_t end);
  // Conv2D input gradient. dy [N,OH,OW,CO], w_t [KH,KW,CO,CI] (the filter with its two
  // channel axes swapped) -> dx [N,H,W,CI]; units: N*H rows.
  void (*conv_backprop_input)(const ConvGeometry&, const float* dy, const float* w_t,
                              float* dx, int64_t begin, int64_t end);
  // Conv2D weight gradient. x, dy -> dw [KH,KW,CI,CO], which must be zero on entry;
  // units: conv_backprop_filter_units(g).
  void (*conv_backprop_filter)(const ConvGeometry&, const float* x, const float* dy,
                               float* dw, int64_t begin, int64_t end);
  int64_t (*conv_backprop_filter_units)(const ConvGeometry&);
  // Depthwise forward (channel multiplier 1). x, w [KH,KW,C] -> y; units: N*OH rows.
  void (*depthwise_forward)(const ConvGeometry&, const float* x, const float* w, float* y,
                            int64_t begin, int64_t end);
  // Depthwise input gradient. dy, w -> dx; units: N*H rows.
  void (*depthwise_backprop_input)(const ConvGeometry&, const float* dy, const float* w,
                                   float* dx, int64_t begin, int64_t end);
  // Depthwise weight gradient. x, dy -> dw [KH,KW,C], which must be zero on entry;
  // units: depthwise_backprop_filter_units(g).
  void (*depthwise_backprop_filter)(const ConvGeometry&, const float* x, const float* dy,
                                    float* dw, int64_t begin, int64_t end);
  int64_t (*depthwise_backprop_filter_units)(const ConvGeometry&);
};

// The tables, one per translation unit and instruction set (kernels_<isa>.cc).
const KernelTable& ScalarKernels();  // std::fma, one lane: the reference
const KernelTable& Avx2Kernels();    // 8 lanes, AVX2 and FMA
const KernelTable& Avx512Kernels();  // 16 lanes, AVX-512F

}  // namespace reproseg_fixed_order

#endif  // REPROSEG_KERNELS_GEOMETRY_H_
