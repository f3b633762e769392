// The fixed-order convolution kernels, written once over the lanes of lanes.h and compiled
// once per instruction set (kernels_<isa>.cc), as XNNPACK generates its microkernel variants.
//
// The rule that makes every path give the same bits (docs/determinism.md, "The fixed-order
// kernels"): lanes and threads run over independent outputs, never over a sum. Every output
// element is one chain of fused multiply-adds, from +0, over its terms in one fixed order;
// register blocks and the split into work units only decide which element is computed when.
// Channel counts that are no multiple of the vector width end in one-lane blocks that run
// the same chain.
#ifndef REPROSEG_KERNELS_CONV_KERNELS_H_
#define REPROSEG_KERNELS_CONV_KERNELS_H_

#include <algorithm>
#include <cstdint>

#include "kernels/geometry.h"
#include "kernels/lanes.h"

namespace reproseg_fixed_order {
namespace {

constexpr int kPixels = 4;         // output pixels per register block
constexpr int kFilterChannels = 4;  // input channels per weight-gradient register block

// A register block of kVectors vectors of Lanes: kVectors * Lanes::kLanes channels.
template <class Lanes_, int kVectors_>
struct Block {
  using Lanes = Lanes_;
  using Reg = typename Lanes_::Reg;
  static constexpr int kVectors = kVectors_;
  static constexpr int kLanes = Lanes_::kLanes;
  static constexpr int64_t kWidth = int64_t{kLanes} * kVectors_;
};

// Channels [0, channels) as blocks: wide blocks of V::kBlockVectors vectors, then single
// vectors, then single lanes. Block k starts where ChannelBlockAt says.
template <class V>
struct ChannelBlocks {
  using Wide = Block<V, V::kBlockVectors>;
  using Single = Block<V, 1>;
  using Tail = Block<ScalarLanes, 1>;
  int64_t wide, single, tail;

  explicit ChannelBlocks(int64_t channels)
      : wide(channels / Wide::kWidth),
        single(channels % Wide::kWidth / Single::kWidth),
        tail(channels % Single::kWidth) {}
  int64_t count() const { return wide + single + tail; }

  // Calls body(block, first channel) for block k.
  template <class Body>
  void At(int64_t k, const Body& body) const {
    if (k < wide) return body(Wide(), k * Wide::kWidth);
    const int64_t after_wide = wide * Wide::kWidth;
    if (k < wide + single) return body(Single(), after_wide + (k - wide) * Single::kWidth);
    body(Tail(), after_wide + single * Single::kWidth + (k - wide - single));
  }
  template <class Body>
  void ForEach(const Body& body) const {
    for (int64_t k = 0; k < count(); ++k) At(k, body);
  }
};

inline int64_t FloorDiv(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }
inline int64_t FloorMod(int64_t a, int64_t b) { return a - FloorDiv(a, b) * b; }

// Calls single(i) or quad(i), for pixels i..i+3, over i in [0, count): quads where all four
// pixels are interior (no tap of theirs needs a bounds check).
template <class Interior, class Single, class Quad>
void WalkPixels(int64_t count, const Interior& interior, const Single& single,
                const Quad& quad) {
  int64_t i = 0;
  while (i < count) {
    if (i + kPixels <= count && interior(i) && interior(i + 1) && interior(i + 2) &&
        interior(i + 3)) {
      quad(i);
      i += kPixels;
    } else {
      single(i);
      ++i;
    }
  }
}

// ---- Conv2D forward: y[n,oh,ow,co] = chain over (kh, kw, ci) of x[n,ih,iw,ci] * w[kh,kw,ci,co].

// kPix output pixels ow, ow+1, ... of one row, channels [co, co + B::kWidth).
template <class B, int kPix>
void ConvForwardPixels(const ConvGeometry& g, const float* x_image, const float* w,
                       float* y_row, int64_t ow, int64_t co, int64_t ih0) {
  using L = typename B::Lanes;
  typename B::Reg acc[kPix][B::kVectors];
  for (int p = 0; p < kPix; ++p)
    for (int j = 0; j < B::kVectors; ++j) acc[p][j] = L::Zero();
  const int64_t iw0 = ow * g.stride_w - g.pad_left;
  const int64_t pixel_step = g.stride_w * g.in_c;
  for (int64_t kh = std::max<int64_t>(0, -ih0); kh < std::min(g.k_h, g.in_h - ih0); ++kh) {
    const float* x_row = x_image + (ih0 + kh) * g.in_w * g.in_c;
    for (int64_t kw = 0; kw < g.k_w; ++kw) {
      const int64_t iw = iw0 + kw;
      if (kPix == 1 && (iw < 0 || iw >= g.in_w)) continue;  // a tap in the padding
      const float* xp = x_row + iw * g.in_c;
      const float* wp = w + (kh * g.k_w + kw) * g.in_c * g.out_c + co;
      for (int64_t ci = 0; ci < g.in_c; ++ci) {
        typename B::Reg wv[B::kVectors];
        for (int j = 0; j < B::kVectors; ++j) wv[j] = L::Load(wp + ci * g.out_c + j * B::kLanes);
        for (int p = 0; p < kPix; ++p) {
          const typename B::Reg xb = L::Broadcast(xp[p * pixel_step + ci]);
          for (int j = 0; j < B::kVectors; ++j) acc[p][j] = L::MulAdd(xb, wv[j], acc[p][j]);
        }
      }
    }
  }
  for (int p = 0; p < kPix; ++p)
    for (int j = 0; j < B::kVectors; ++j)
      L::Store(y_row + (ow + p) * g.out_c + co + j * B::kLanes, acc[p][j]);
}

template <class V>
void ConvForward(const ConvGeometry& g, const float* x, const float* w, float* y,
                 int64_t begin, int64_t end) {
  const ChannelBlocks<V> blocks(g.out_c);
  auto interior = [&](int64_t ow) {
    const int64_t iw0 = ow * g.stride_w - g.pad_left;
    return iw0 >= 0 && iw0 + g.k_w <= g.in_w;
  };
  for (int64_t row = begin; row < end; ++row) {
    const int64_t n = row / g.out_h, oh = row % g.out_h;
    const int64_t ih0 = oh * g.stride_h - g.pad_top;
    const float* x_image = x + n * g.in_h * g.in_w * g.in_c;
    float* y_row = y + row * g.out_w * g.out_c;
    blocks.ForEach([&](auto block, int64_t co) {
      using B = decltype(block);
      WalkPixels(
          g.out_w, interior,
          [&](int64_t ow) { ConvForwardPixels<B, 1>(g, x_image, w, y_row, ow, co, ih0); },
          [&](int64_t ow) { ConvForwardPixels<B, kPixels>(g, x_image, w, y_row, ow, co, ih0); });
    });
  }
}

// ---- Conv2D input gradient: dx[n,ih,iw,ci] = chain over (kh, kw, co) of
// dy[n,oh,ow,co] * w[kh,kw,ci,co], for the (kh, kw) with ih = oh*sh - pad_top + kh and
// iw = ow*sw - pad_left + kw for some output pixel (oh, ow). Pixels iw, iw+sw, iw+2sw, ...
// share their taps kw, so a block takes kPix of them.

template <class B, int kPix>
void ConvBackpropInputPixels(const ConvGeometry& g, const float* dy_image, const float* w_t,
                             float* dx_row, int64_t ih, int64_t iw, int64_t ci) {
  using L = typename B::Lanes;
  typename B::Reg acc[kPix][B::kVectors];
  for (int p = 0; p < kPix; ++p)
    for (int j = 0; j < B::kVectors; ++j) acc[p][j] = L::Zero();
  for (int64_t kh = 0; kh < g.k_h; ++kh) {
    const int64_t t = ih + g.pad_top - kh;
    if (t < 0 || t % g.stride_h != 0 || t / g.stride_h >= g.out_h) continue;
    const float* dy_row = dy_image + (t / g.stride_h) * g.out_w * g.out_c;
    for (int64_t kw = 0; kw < g.k_w; ++kw) {
      const int64_t u = iw + g.pad_left - kw;
      if (FloorMod(u, g.stride_w) != 0) continue;  // no output pixel reads iw through kw
      if (kPix == 1 && (u < 0 || u / g.stride_w >= g.out_w)) continue;
      const float* dyp = dy_row + (u / g.stride_w) * g.out_c;
      const float* wp = w_t + (kh * g.k_w + kw) * g.out_c * g.in_c + ci;
      for (int64_t co = 0; co < g.out_c; ++co) {
        typename B::Reg wv[B::kVectors];
        for (int j = 0; j < B::kVectors; ++j) wv[j] = L::Load(wp + co * g.in_c + j * B::kLanes);
        for (int p = 0; p < kPix; ++p) {
          const typename B::Reg db = L::Broadcast(dyp[p * g.out_c + co]);
          for (int j = 0; j < B::kVectors; ++j) acc[p][j] = L::MulAdd(db, wv[j], acc[p][j]);
        }
      }
    }
  }
  for (int p = 0; p < kPix; ++p)
    for (int j = 0; j < B::kVectors; ++j)
      L::Store(dx_row + (iw + p * g.stride_w) * g.in_c + ci + j * B::kLanes, acc[p][j]);
}

template <class V>
void ConvBackpropInput(const ConvGeometry& g, const float* dy, const float* w_t, float* dx,
                       int64_t begin, int64_t end) {
  const ChannelBlocks<V> blocks(g.in_c);
  for (int64_t row = begin; row < end; ++row) {
    const int64_t n = row / g.in_h, ih = row % g.in_h;
    const float* dy_image = dy + n * g.out_h * g.out_w * g.out_c;
    float* dx_row = dx + row * g.in_w * g.in_c;
    for (int64_t phase = 0; phase < std::min(g.stride_w, g.in_w); ++phase) {
      // Pixels iw = phase + q * stride_w; interior: every tap kw reaching iw is in range.
      auto interior = [&](int64_t q) {
        const int64_t iw = phase + q * g.stride_w;
        for (int64_t kw = 0; kw < g.k_w; ++kw) {
          const int64_t u = iw + g.pad_left - kw;
          if (FloorMod(u, g.stride_w) == 0 && (u < 0 || u / g.stride_w >= g.out_w)) return false;
        }
        return true;
      };
      const int64_t count = (g.in_w - phase + g.stride_w - 1) / g.stride_w;
      blocks.ForEach([&](auto block, int64_t ci) {
        using B = decltype(block);
        WalkPixels(
            count, interior,
            [&](int64_t q) {
              ConvBackpropInputPixels<B, 1>(g, dy_image, w_t, dx_row, ih,
                                            phase + q * g.stride_w, ci);
            },
            [&](int64_t q) {
              ConvBackpropInputPixels<B, kPixels>(g, dy_image, w_t, dx_row, ih,
                                                  phase + q * g.stride_w, ci);
            });
      });
    }
  }
}

// ---- Conv2D weight gradient: dw[kh,kw,ci,co] = chain over (n, oh, ow) of
// x[n,ih,iw,ci] * dy[n,oh,ow,co], skipping output pixels whose tap (kh, kw) is in the padding.
// Rows outer: each thread walks the rows of x and dy once, and for each row loads the
// accumulators of its units from dw and stores them back, which keeps every element's order
// and the row's data in cache. A work unit is (tap, block of kFilterChannels input channels or
// one tail channel, output-channel block).

// Output columns whose tap kw is inside the input: iw = ow*sw - pad_left + kw in [0, in_w).
inline int64_t FirstColumn(const ConvGeometry& g, int64_t kw) {
  return std::max<int64_t>(0, -FloorDiv(kw - g.pad_left, g.stride_w));
}
inline int64_t EndColumn(const ConvGeometry& g, int64_t kw) {
  return std::min(g.out_w, FloorDiv(g.in_w - 1 + g.pad_left - kw, g.stride_w) + 1);
}

// The terms of output row (n, oh) for dw[kh, kw, ci.., co..].
template <class B, int kChannels>
void ConvBackpropFilterRow(const ConvGeometry& g, const float* x, const float* dy, float* dw,
                           int64_t n, int64_t oh, int64_t kh, int64_t kw, int64_t ci,
                           int64_t co) {
  using L = typename B::Lanes;
  const int64_t ih = oh * g.stride_h - g.pad_top + kh;
  const int64_t ow_lo = FirstColumn(g, kw), ow_hi = EndColumn(g, kw);
  if (ih < 0 || ih >= g.in_h || ow_lo >= ow_hi) return;
  float* dwp = dw + ((kh * g.k_w + kw) * g.in_c + ci) * g.out_c + co;
  typename B::Reg acc[kChannels][B::kVectors];
  for (int c = 0; c < kChannels; ++c)
    for (int j = 0; j < B::kVectors; ++j) acc[c][j] = L::Load(dwp + c * g.out_c + j * B::kLanes);
  const float* xp =
      x + ((n * g.in_h + ih) * g.in_w + ow_lo * g.stride_w - g.pad_left + kw) * g.in_c + ci;
  const float* dyp = dy + ((n * g.out_h + oh) * g.out_w + ow_lo) * g.out_c + co;
  for (int64_t ow = ow_lo; ow < ow_hi; ++ow) {
    typename B::Reg d[B::kVectors];
    for (int j = 0; j < B::kVectors; ++j) d[j] = L::Load(dyp + j * B::kLanes);
    for (int c = 0; c < kChannels; ++c) {
      const typename B::Reg xb = L::Broadcast(xp[c]);
      for (int j = 0; j < B::kVectors; ++j) acc[c][j] = L::MulAdd(xb, d[j], acc[c][j]);
    }
    xp += g.stride_w * g.in_c;
    dyp += g.out_c;
  }
  for (int c = 0; c < kChannels; ++c)
    for (int j = 0; j < B::kVectors; ++j) L::Store(dwp + c * g.out_c + j * B::kLanes, acc[c][j]);
}

inline int64_t FilterChannelBlocks(int64_t in_c) {
  return in_c / kFilterChannels + in_c % kFilterChannels;
}

template <class V>
int64_t ConvBackpropFilterUnits(const ConvGeometry& g) {
  return g.k_h * g.k_w * FilterChannelBlocks(g.in_c) * ChannelBlocks<V>(g.out_c).count();
}

template <class V>
void ConvBackpropFilter(const ConvGeometry& g, const float* x, const float* dy, float* dw,
                        int64_t begin, int64_t end) {
  const ChannelBlocks<V> blocks(g.out_c);
  const int64_t ci_blocks = FilterChannelBlocks(g.in_c);
  const int64_t full_ci_blocks = g.in_c / kFilterChannels;
  for (int64_t n = 0; n < g.batch; ++n) {
    for (int64_t oh = 0; oh < g.out_h; ++oh) {
      for (int64_t unit = begin; unit < end; ++unit) {
        const int64_t co_block = unit % blocks.count();
        const int64_t ci_block = unit / blocks.count() % ci_blocks;
        const int64_t tap = unit / blocks.count() / ci_blocks;
        const int64_t kh = tap / g.k_w, kw = tap % g.k_w;
        blocks.At(co_block, [&](auto block, int64_t co) {
          using B = decltype(block);
          if (ci_block < full_ci_blocks) {
            ConvBackpropFilterRow<B, kFilterChannels>(g, x, dy, dw, n, oh, kh, kw,
                                                      ci_block * kFilterChannels, co);
          } else {
            const int64_t ci = full_ci_blocks * kFilterChannels + (ci_block - full_ci_blocks);
            ConvBackpropFilterRow<B, 1>(g, x, dy, dw, n, oh, kh, kw, ci, co);
          }
        });
      }
    }
  }
}

// ---- Depthwise (channel multiplier 1), lanes over channels.
// Forward: y[n,oh,ow,c] = chain over (kh, kw) of x[n,ih,iw,c] * w[kh,kw,c].

template <class V>
void DepthwiseForward(const ConvGeometry& g, const float* x, const float* w, float* y,
                      int64_t begin, int64_t end) {
  const ChannelBlocks<V> blocks(g.in_c);
  const int64_t c_all = g.in_c;
  for (int64_t row = begin; row < end; ++row) {
    const int64_t n = row / g.out_h, oh = row % g.out_h;
    const int64_t ih0 = oh * g.stride_h - g.pad_top;
    for (int64_t ow = 0; ow < g.out_w; ++ow) {
      const int64_t iw0 = ow * g.stride_w - g.pad_left;
      blocks.ForEach([&](auto block, int64_t c) {
        using B = decltype(block);
        using L = typename B::Lanes;
        typename B::Reg acc[B::kVectors];
        for (int j = 0; j < B::kVectors; ++j) acc[j] = L::Zero();
        for (int64_t kh = std::max<int64_t>(0, -ih0); kh < std::min(g.k_h, g.in_h - ih0); ++kh) {
          for (int64_t kw = std::max<int64_t>(0, -iw0); kw < std::min(g.k_w, g.in_w - iw0);
               ++kw) {
            const float* xp = x + ((n * g.in_h + ih0 + kh) * g.in_w + iw0 + kw) * c_all + c;
            const float* wp = w + (kh * g.k_w + kw) * c_all + c;
            for (int j = 0; j < B::kVectors; ++j)
              acc[j] = L::MulAdd(L::Load(xp + j * B::kLanes), L::Load(wp + j * B::kLanes), acc[j]);
          }
        }
        float* yp = y + (row * g.out_w + ow) * c_all + c;
        for (int j = 0; j < B::kVectors; ++j) L::Store(yp + j * B::kLanes, acc[j]);
      });
    }
  }
}

// Input gradient: dx[n,ih,iw,c] = chain over (kh, kw) of dy[n,oh,ow,c] * w[kh,kw,c], for the
// taps through which output pixel (oh, ow) reads (ih, iw).
template <class V>
void DepthwiseBackpropInput(const ConvGeometry& g, const float* dy, const float* w, float* dx,
                            int64_t begin, int64_t end) {
  const ChannelBlocks<V> blocks(g.in_c);
  const int64_t c_all = g.in_c;
  for (int64_t row = begin; row < end; ++row) {
    const int64_t n = row / g.in_h, ih = row % g.in_h;
    for (int64_t iw = 0; iw < g.in_w; ++iw) {
      blocks.ForEach([&](auto block, int64_t c) {
        using B = decltype(block);
        using L = typename B::Lanes;
        typename B::Reg acc[B::kVectors];
        for (int j = 0; j < B::kVectors; ++j) acc[j] = L::Zero();
        for (int64_t kh = 0; kh < g.k_h; ++kh) {
          const int64_t t = ih + g.pad_top - kh;
          if (t < 0 || t % g.stride_h != 0 || t / g.stride_h >= g.out_h) continue;
          for (int64_t kw = 0; kw < g.k_w; ++kw) {
            const int64_t u = iw + g.pad_left - kw;
            if (u < 0 || u % g.stride_w != 0 || u / g.stride_w >= g.out_w) continue;
            const float* dyp =
                dy + ((n * g.out_h + t / g.stride_h) * g.out_w + u / g.stride_w) * c_all + c;
            const float* wp = w + (kh * g.k_w + kw) * c_all + c;
            for (int j = 0; j < B::kVectors; ++j)
              acc[j] =
                  L::MulAdd(L::Load(dyp + j * B::kLanes), L::Load(wp + j * B::kLanes), acc[j]);
          }
        }
        float* dxp = dx + (row * g.in_w + iw) * c_all + c;
        for (int j = 0; j < B::kVectors; ++j) L::Store(dxp + j * B::kLanes, acc[j]);
      });
    }
  }
}

// Weight gradient: dw[kh,kw,c] = chain over (n, oh, ow) of x[n,ih,iw,c] * dy[n,oh,ow,c],
// skipping output pixels whose tap (kh, kw) is in the padding. Rows outer, as the Conv2D
// weight gradient; a unit is (tap, channel block); dw must be zero on entry.
template <class V>
int64_t DepthwiseBackpropFilterUnits(const ConvGeometry& g) {
  return g.k_h * g.k_w * ChannelBlocks<V>(g.in_c).count();
}

template <class V>
void DepthwiseBackpropFilter(const ConvGeometry& g, const float* x, const float* dy, float* dw,
                             int64_t begin, int64_t end) {
  const ChannelBlocks<V> blocks(g.in_c);
  const int64_t c_all = g.in_c;
  for (int64_t n = 0; n < g.batch; ++n) {
    for (int64_t oh = 0; oh < g.out_h; ++oh) {
      for (int64_t unit = begin; unit < end; ++unit) {
        const int64_t tap = unit / blocks.count();
        const int64_t kh = tap / g.k_w, kw = tap % g.k_w;
        const int64_t ih = oh * g.stride_h - g.pad_top + kh;
        if (ih < 0 || ih >= g.in_h) continue;
        blocks.At(unit % blocks.count(), [&](auto block, int64_t c) {
          using B = decltype(block);
          using L = typename B::Lanes;
          float* dwp = dw + tap * c_all + c;
          typename B::Reg acc[B::kVectors];
          for (int j = 0; j < B::kVectors; ++j) acc[j] = L::Load(dwp + j * B::kLanes);
          for (int64_t ow = FirstColumn(g, kw); ow < EndColumn(g, kw); ++ow) {
            const int64_t iw = ow * g.stride_w - g.pad_left + kw;
            const float* xp = x + ((n * g.in_h + ih) * g.in_w + iw) * c_all + c;
            const float* dyp = dy + ((n * g.out_h + oh) * g.out_w + ow) * c_all + c;
            for (int j = 0; j < B::kVectors; ++j)
              acc[j] =
                  L::MulAdd(L::Load(xp + j * B::kLanes), L::Load(dyp + j * B::kLanes), acc[j]);
          }
          for (int j = 0; j < B::kVectors; ++j) L::Store(dwp + j * B::kLanes, acc[j]);
        });
      }
    }
  }
}

template <class V>
KernelTable MakeKernelTable(const char* name) {
  return KernelTable{name,
                     &ConvForward<V>,
                     &ConvBackpropInput<V>,
                     &ConvBackpropFilter<V>,
                     &ConvBackpropFilterUnits<V>,
                     &DepthwiseForward<V>,
                     &DepthwiseBackpropInput<V>,
                     &DepthwiseBackpropFilter<V>,
                     &DepthwiseBackpropFilterUnits<V>};
}

}  // namespace
}  // namespace reproseg_fixed_order

#endif  // REPROSEG_KERNELS_CONV_KERNELS_H_
