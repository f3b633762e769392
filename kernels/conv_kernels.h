// The fixed-order convolution kernels, written once over the lanes of lanes.h and compiled
// once per instruction set (kernels_<isa>.cc), as XNNPACK generates its microkernel variants.
//
// The rule that makes every path give the same bits (docs/determinism.md, "The fixed-order
// kernels"): lanes and threads run over independent outputs, never over a sum. Every output
// element is one chain of fused multiply-adds, from +0, over its terms in one fixed order.
// The chain may pause: its accumulator is stored in the output and loaded again for the next
// terms, which keeps the order. Register blocks, tiles, channel tails (masked lanes) and the
// split into work units only decide when an element's next terms are computed.
#ifndef REPROSEG_KERNELS_CONV_KERNELS_H_
#define REPROSEG_KERNELS_CONV_KERNELS_H_

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "kernels/geometry.h"
#include "kernels/lanes.h"

namespace reproseg_fixed_order {
namespace {

constexpr int kPixels = 4;            // pixels per register block
constexpr int kFilterChannels = 4;    // input channels per weight-gradient register block
constexpr int64_t kTilePixels = 64;   // output pixels a forward tile aims at (weight reuse)
constexpr int64_t kChunkTerms = 64;   // channel terms per pass over a tile (weights in L1)

// A register block of kVectors vectors of Lanes over consecutive channels; a partial block
// is one vector of which `valid` lanes are channels (a tail).
template <class Lanes_, int kVectors_, bool kPartial = false>
struct Block {
  using Lanes = Lanes_;
  using Reg = typename Lanes_::Reg;
  static constexpr int kVectors = kVectors_;
  static constexpr int kLanes = Lanes_::kLanes;
  int valid = kLanes;

  Reg Load(const float* p) const {
    return kPartial ? Lanes::LoadPartial(p, valid) : Lanes::Load(p);
  }
  void Store(float* p, Reg v) const {
    if (kPartial) {
      Lanes::StorePartial(p, v, valid);
    } else {
      Lanes::Store(p, v);
    }
  }
};

// Channels [0, channels) as blocks: wide blocks of V::kBlockVectors vectors, then single
// vectors, then one partial vector for the rest.
template <class V>
struct ChannelBlocks {
  using Wide = Block<V, V::kBlockVectors>;
  using Single = Block<V, 1>;
  using Partial = Block<V, 1, true>;
  static constexpr int64_t kWideWidth = int64_t{V::kLanes} * V::kBlockVectors;
  int64_t wide, single, rest;

  explicit ChannelBlocks(int64_t channels)
      : wide(channels / kWideWidth),
        single(channels % kWideWidth / V::kLanes),
        rest(channels % V::kLanes) {}
  int64_t count() const { return wide + single + (rest > 0); }

  // Calls body(block, first channel) for block k.
  template <class Body>
  void At(int64_t k, const Body& body) const {
    if (k < wide) return body(Wide(), k * kWideWidth);
    const int64_t after_wide = wide * kWideWidth;
    if (k < wide + single) return body(Single(), after_wide + (k - wide) * V::kLanes);
    Partial partial;
    partial.valid = static_cast<int>(rest);
    body(partial, after_wide + single * V::kLanes);
  }
  template <class Body>
  void ForEach(const Body& body) const {
    for (int64_t k = 0; k < count(); ++k) At(k, body);
  }
};

inline int64_t FloorDiv(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

// Output columns ow whose tap kw is inside the input: iw = ow*sw - pad_left + kw in [0, in_w).
inline int64_t FirstColumn(const ConvGeometry& g, int64_t kw) {
  return std::max<int64_t>(0, -FloorDiv(kw - g.pad_left, g.stride_w));
}
inline int64_t EndColumn(const ConvGeometry& g, int64_t kw) {
  return std::min(g.out_w, FloorDiv(g.in_w - 1 + g.pad_left - kw, g.stride_w) + 1);
}

// The next `terms` terms of kPix chains per lane: for pixel p and term c,
// acc[p] = fma(in[p * in_step + c], weights[c * weight_step + lane], acc[p]), with acc[p]
// loaded from and stored back to out + p * out_step.
template <class B, int kPix>
void MulAddPixels(const B& block, float* out, int64_t out_step, const float* in,
                  int64_t in_step, const float* weights, int64_t weight_step, int64_t terms) {
  using L = typename B::Lanes;
  typename B::Reg acc[kPix][B::kVectors];
  for (int p = 0; p < kPix; ++p)
    for (int j = 0; j < B::kVectors; ++j) acc[p][j] = block.Load(out + p * out_step + j * B::kLanes);
  for (int64_t c = 0; c < terms; ++c) {
    typename B::Reg wv[B::kVectors];
    for (int j = 0; j < B::kVectors; ++j) wv[j] = block.Load(weights + c * weight_step + j * B::kLanes);
    for (int p = 0; p < kPix; ++p) {
      const typename B::Reg xb = L::Broadcast(in[p * in_step + c]);
      for (int j = 0; j < B::kVectors; ++j) acc[p][j] = L::MulAdd(xb, wv[j], acc[p][j]);
    }
  }
  for (int p = 0; p < kPix; ++p)
    for (int j = 0; j < B::kVectors; ++j) block.Store(out + p * out_step + j * B::kLanes, acc[p][j]);
}

// MulAddPixels over `count` pixels, kPixels at a time.
template <class B>
void MulAddRow(const B& block, float* out, int64_t out_step, const float* in, int64_t in_step,
               const float* weights, int64_t weight_step, int64_t terms, int64_t count) {
  int64_t p = 0;
  for (; p + kPixels <= count; p += kPixels) {
    MulAddPixels<B, kPixels>(block, out + p * out_step, out_step, in + p * in_step, in_step,
                             weights, weight_step, terms);
  }
  for (; p < count; ++p) {
    MulAddPixels<B, 1>(block, out + p * out_step, out_step, in + p * in_step, in_step, weights,
                       weight_step, terms);
  }
}

inline int64_t TileRows(int64_t row_pixels) {
  return std::max<int64_t>(1, (kTilePixels + row_pixels - 1) / row_pixels);
}

// ---- Conv2D forward: y[n,oh,ow,co] = chain over (kh, kw, ci) of x[n,ih,iw,ci] * w[kh,kw,ci,co].
// Units: rows (n, oh), taken in tiles of about kTilePixels pixels, each zeroed first;
// for each tile and channel block, the terms go in chain order, kChunkTerms at a time per
// pass over the tile, so that those weights stay in cache. Pixels that read every tap kw of a
// row kh take its terms (kw, ci) as one run: they are consecutive in x and in w.

// The terms (kw, ci) with kw*in_c + ci in [0, terms) of filter row kh, from tap kw on, for
// output columns [ow_lo, ow_hi) of the tile's rows.
template <class B>
void ConvForwardPass(const B& block, const ConvGeometry& g, const float* x, const float* w,
                     float* y, int64_t tile, int64_t tile_end, int64_t co, int64_t kh,
                     int64_t kw, int64_t ow_lo, int64_t ow_hi, int64_t terms) {
  if (ow_lo >= ow_hi) return;
  for (int64_t t = 0; t < terms; t += kChunkTerms) {
    const float* wp = w + ((kh * g.k_w + kw) * g.in_c + t) * g.out_c + co;
    for (int64_t row = tile; row < tile_end; ++row) {
      const int64_t n = row / g.out_h, oh = row % g.out_h;
      const int64_t ih = oh * g.stride_h - g.pad_top + kh;
      if (ih < 0 || ih >= g.in_h) continue;
      const float* xp =
          x + ((n * g.in_h + ih) * g.in_w + ow_lo * g.stride_w - g.pad_left + kw) * g.in_c + t;
      MulAddRow(block, y + (row * g.out_w + ow_lo) * g.out_c + co, g.out_c, xp,
                g.stride_w * g.in_c, wp, g.out_c, std::min(kChunkTerms, terms - t),
                ow_hi - ow_lo);
    }
  }
}

template <class V>
void ConvForward(const ConvGeometry& g, const float* x, const float* w, float* y,
                 int64_t begin, int64_t end) {
  const ChannelBlocks<V> blocks(g.out_c);
  // Output columns that read every tap kw: [inner_lo, inner_hi).
  const int64_t inner_lo = FirstColumn(g, 0);
  const int64_t inner_hi = std::max(inner_lo, EndColumn(g, g.k_w - 1));
  const int64_t tile_rows = TileRows(g.out_w);
  for (int64_t tile = begin; tile < end; tile += tile_rows) {
    const int64_t tile_end = std::min(end, tile + tile_rows);
    std::fill(y + tile * g.out_w * g.out_c, y + tile_end * g.out_w * g.out_c, 0.0f);
    blocks.ForEach([&](const auto& block, int64_t co) {
      for (int64_t kh = 0; kh < g.k_h; ++kh) {
        ConvForwardPass(block, g, x, w, y, tile, tile_end, co, kh, 0, inner_lo, inner_hi,
                        g.k_w * g.in_c);
        for (int64_t kw = 0; kw < g.k_w; ++kw) {  // the columns at the edges, tap by tap
          const int64_t lo = FirstColumn(g, kw), hi = EndColumn(g, kw);
          ConvForwardPass(block, g, x, w, y, tile, tile_end, co, kh, kw, lo,
                          std::min(hi, inner_lo), g.in_c);
          ConvForwardPass(block, g, x, w, y, tile, tile_end, co, kh, kw,
                          std::max(lo, inner_hi), hi, g.in_c);
        }
      }
    });
  }
}

// ---- Conv2D input gradient: dx[n,ih,iw,ci] = chain over (kh, kw, co) of
// dy[n,oh,ow,co] * w[kh,kw,ci,co], for the output pixels (oh, ow) that read (ih, iw) through
// tap (kh, kw). w_t is w with its channel axes swapped. Units: rows (n, ih) in tiles, each
// zeroed first, as the forward pass; through tap (kw), output columns ow in
// [FirstColumn, EndColumn) reach input columns iw = ow*sw - pad_left + kw, one pixel each: a
// tap reaches one pixel in stride_h * stride_w, so tiles are that much larger.
template <class V>
void ConvBackpropInput(const ConvGeometry& g, const float* dy, const float* w_t, float* dx,
                       int64_t begin, int64_t end) {
  const ChannelBlocks<V> blocks(g.in_c);
  const int64_t tile_rows = TileRows(g.in_w) * g.stride_h * g.stride_w;
  for (int64_t tile = begin; tile < end; tile += tile_rows) {
    const int64_t tile_end = std::min(end, tile + tile_rows);
    std::fill(dx + tile * g.in_w * g.in_c, dx + tile_end * g.in_w * g.in_c, 0.0f);
    blocks.ForEach([&](const auto& block, int64_t ci) {
      for (int64_t kh = 0; kh < g.k_h; ++kh) {
        for (int64_t kw = 0; kw < g.k_w; ++kw) {
          const int64_t ow_lo = FirstColumn(g, kw), count = EndColumn(g, kw) - ow_lo;
          for (int64_t co = 0; co < g.out_c; co += kChunkTerms) {
            const int64_t terms = std::min(kChunkTerms, g.out_c - co);
            const float* wp = w_t + ((kh * g.k_w + kw) * g.out_c + co) * g.in_c + ci;
            for (int64_t row = tile; row < tile_end; ++row) {
              const int64_t n = row / g.in_h, ih = row % g.in_h;
              const int64_t t = ih + g.pad_top - kh;  // = oh * stride_h for a reaching row
              if (t < 0 || t % g.stride_h != 0 || t / g.stride_h >= g.out_h || count <= 0) {
                continue;
              }
              const float* dyp = dy + ((n * g.out_h + t / g.stride_h) * g.out_w + ow_lo) * g.out_c + co;
              float* dxp = dx + (row * g.in_w + ow_lo * g.stride_w - g.pad_left + kw) * g.in_c + ci;
              MulAddRow(block, dxp, g.stride_w * g.in_c, dyp, g.out_c, wp, g.in_c, terms, count);
            }
          }
        }
      }
    });
  }
}

// ---- Conv2D weight gradient: dw[kh,kw,ci,co] = chain over (n, oh, ow) of
// x[n,ih,iw,ci] * dy[n,oh,ow,co], skipping output pixels whose tap (kh, kw) is in the padding.
// dw must be zero on entry. Rows outer: each thread walks the rows of x and dy once, and for
// each row loads the accumulators of its units from dw and stores them back, which keeps the
// row's data in cache. A unit is (tap, block of kFilterChannels input channels or one tail
// channel, output-channel block).

// The terms of output row (n, oh) for dw[kh, kw, ci.., co..].
template <class B, int kChannels>
void ConvBackpropFilterRow(const B& block, const ConvGeometry& g, const float* x,
                           const float* dy, float* dw, int64_t n, int64_t oh, int64_t kh,
                           int64_t kw, int64_t ci, int64_t co) {
  using L = typename B::Lanes;
  const int64_t ih = oh * g.stride_h - g.pad_top + kh;
  const int64_t ow_lo = FirstColumn(g, kw), ow_hi = EndColumn(g, kw);
  if (ih < 0 || ih >= g.in_h || ow_lo >= ow_hi) return;
  float* dwp = dw + ((kh * g.k_w + kw) * g.in_c + ci) * g.out_c + co;
  typename B::Reg acc[kChannels][B::kVectors];
  for (int c = 0; c < kChannels; ++c)
    for (int j = 0; j < B::kVectors; ++j) acc[c][j] = block.Load(dwp + c * g.out_c + j * B::kLanes);
  const float* xp =
      x + ((n * g.in_h + ih) * g.in_w + ow_lo * g.stride_w - g.pad_left + kw) * g.in_c + ci;
  const float* dyp = dy + ((n * g.out_h + oh) * g.out_w + ow_lo) * g.out_c + co;
  for (int64_t ow = ow_lo; ow < ow_hi; ++ow) {
    typename B::Reg d[B::kVectors];
    for (int j = 0; j < B::kVectors; ++j) d[j] = block.Load(dyp + j * B::kLanes);
    for (int c = 0; c < kChannels; ++c) {
      const typename B::Reg xb = L::Broadcast(xp[c]);
      for (int j = 0; j < B::kVectors; ++j) acc[c][j] = L::MulAdd(xb, d[j], acc[c][j]);
    }
    xp += g.stride_w * g.in_c;
    dyp += g.out_c;
  }
  for (int c = 0; c < kChannels; ++c)
    for (int j = 0; j < B::kVectors; ++j) block.Store(dwp + c * g.out_c + j * B::kLanes, acc[c][j]);
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
        blocks.At(co_block, [&](const auto& block, int64_t co) {
          using B = std::decay_t<decltype(block)>;
          if (ci_block < full_ci_blocks) {
            ConvBackpropFilterRow<B, kFilterChannels>(block, g, x, dy, dw, n, oh, kh, kw,
                                                      ci_block * kFilterChannels, co);
          } else {
            const int64_t ci = full_ci_blocks * kFilterChannels + (ci_block - full_ci_blocks);
            ConvBackpropFilterRow<B, 1>(block, g, x, dy, dw, n, oh, kh, kw, ci, co);
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
      blocks.ForEach([&](const auto& block, int64_t c) {
        using B = std::decay_t<decltype(block)>;
        using L = typename B::Lanes;
        typename B::Reg acc[B::kVectors];
        for (int j = 0; j < B::kVectors; ++j) acc[j] = L::Zero();
        for (int64_t kh = std::max<int64_t>(0, -ih0); kh < std::min(g.k_h, g.in_h - ih0); ++kh) {
          for (int64_t kw = std::max<int64_t>(0, -iw0); kw < std::min(g.k_w, g.in_w - iw0);
               ++kw) {
            const float* xp = x + ((n * g.in_h + ih0 + kh) * g.in_w + iw0 + kw) * c_all + c;
            const float* wp = w + (kh * g.k_w + kw) * c_all + c;
            for (int j = 0; j < B::kVectors; ++j)
              acc[j] = L::MulAdd(block.Load(xp + j * B::kLanes), block.Load(wp + j * B::kLanes),
                                 acc[j]);
          }
        }
        float* yp = y + (row * g.out_w + ow) * c_all + c;
        for (int j = 0; j < B::kVectors; ++j) block.Store(yp + j * B::kLanes, acc[j]);
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
      blocks.ForEach([&](const auto& block, int64_t c) {
        using B = std::decay_t<decltype(block)>;
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
              acc[j] = L::MulAdd(block.Load(dyp + j * B::kLanes), block.Load(wp + j * B::kLanes),
                                 acc[j]);
          }
        }
        float* dxp = dx + (row * g.in_w + iw) * c_all + c;
        for (int j = 0; j < B::kVectors; ++j) block.Store(dxp + j * B::kLanes, acc[j]);
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
        blocks.At(unit % blocks.count(), [&](const auto& block, int64_t c) {
          using B = std::decay_t<decltype(block)>;
          using L = typename B::Lanes;
          float* dwp = dw + tap * c_all + c;
          typename B::Reg acc[B::kVectors];
          for (int j = 0; j < B::kVectors; ++j) acc[j] = block.Load(dwp + j * B::kLanes);
          for (int64_t ow = FirstColumn(g, kw); ow < EndColumn(g, kw); ++ow) {
            const int64_t iw = ow * g.stride_w - g.pad_left + kw;
            const float* xp = x + ((n * g.in_h + ih) * g.in_w + iw) * c_all + c;
            const float* dyp = dy + ((n * g.out_h + oh) * g.out_w + ow) * c_all + c;
            for (int j = 0; j < B::kVectors; ++j)
              acc[j] = L::MulAdd(block.Load(xp + j * B::kLanes), block.Load(dyp + j * B::kLanes),
                                 acc[j]);
          }
          for (int j = 0; j < B::kVectors; ++j) block.Store(dwp + j * B::kLanes, acc[j]);
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
