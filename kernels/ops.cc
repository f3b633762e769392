// TensorFlow ops for the fixed-order convolution kernels (conv_kernels.h): why C++ at all is
// that no library here fixes the summation order of a convolution across CPUs and thread
// counts (docs/determinism.md). Each op picks one KernelTable, AVX-512, AVX2 or the scalar
// reference, and splits its work units over TensorFlow's intra-op pool; every choice gives
// the same bits. Gradients are registered in kernels/fixed_order.py.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kernels/geometry.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tsl/platform/denormal.h"

namespace reproseg_fixed_order {
namespace {

using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Tensor;
using ::tensorflow::TensorShape;
using ::tensorflow::shape_inference::DimensionHandle;
using ::tensorflow::shape_inference::InferenceContext;
using ::tensorflow::shape_inference::ShapeHandle;

template <class... Args>
absl::Status InvalidArgument(const Args&... args) {
  return absl::InvalidArgumentError(absl::StrCat(args...));
}

// Which table the ops use: 0 picks the widest the CPU has; the others force one (tests).
enum Path { kAuto = 0, kScalar = 1, kAvx2 = 2, kAvx512 = 3 };
std::atomic<int> forced_path{kAuto};

bool CpuCanRun(int path) {
  __builtin_cpu_init();
  const bool fma = __builtin_cpu_supports("fma");
  switch (path) {
    case kScalar: return fma;  // the reference's std::fma is compiled as the FMA instruction
    case kAvx2: return fma && __builtin_cpu_supports("avx2");
    case kAvx512: return fma && __builtin_cpu_supports("avx512f");
    default: return false;
  }
}

const KernelTable* TableFor(int path) {
  switch (path) {
    case kScalar: return &ScalarKernels();
    case kAvx2: return &Avx2Kernels();
    case kAvx512: return &Avx512Kernels();
    default: return nullptr;
  }
}

// The table in force, or nullptr on a CPU without FMA.
const KernelTable* Kernels() {
  const int path = forced_path.load();
  if (path != kAuto) return TableFor(path);
  for (int widest : {kAvx512, kAvx2, kScalar}) {
    if (CpuCanRun(widest)) return TableFor(widest);
  }
  return nullptr;
}

// ---- Attributes and shapes

struct Window {
  std::vector<int32_t> strides;  // [stride_h, stride_w]
  std::vector<int32_t> pads;     // [top, bottom, left, right]
};

absl::Status CheckWindow(const Window& window) {
  if (window.strides.size() != 2 || window.strides[0] < 1 || window.strides[1] < 1) {
    return InvalidArgument("strides must be [stride_h, stride_w], each at least 1; got ",
                           window.strides.size(), " values");
  }
  if (window.pads.size() != 4 || *std::min_element(window.pads.begin(), window.pads.end()) < 0) {
    return InvalidArgument("pads must be [top, bottom, left, right], none negative; got ",
                           window.pads.size(), " values");
  }
  return absl::OkStatus();
}

template <class Context>
absl::Status ReadWindow(Context* ctx, Window* window) {
  TF_RETURN_IF_ERROR(ctx->GetAttr("strides", &window->strides));
  TF_RETURN_IF_ERROR(ctx->GetAttr("pads", &window->pads));
  return CheckWindow(*window);
}

// Output side of a convolution with this window, or -1 if the window does not fit.
int64_t OutputSide(int64_t in, int64_t k, int64_t stride, int64_t pad_before, int64_t pad_after) {
  const int64_t span = in + pad_before + pad_after - k;
  return span < 0 ? -1 : span / stride + 1;
}

ConvGeometry Geometry(int64_t batch, int64_t in_h, int64_t in_w, int64_t in_c, int64_t k_h,
                      int64_t k_w, int64_t out_c, const Window& window) {
  ConvGeometry g;
  g.batch = batch;
  g.in_h = in_h;
  g.in_w = in_w;
  g.in_c = in_c;
  g.k_h = k_h;
  g.k_w = k_w;
  g.out_c = out_c;
  g.stride_h = window.strides[0];
  g.stride_w = window.strides[1];
  g.pad_top = window.pads[0];
  g.pad_left = window.pads[2];
  g.out_h = OutputSide(in_h, k_h, g.stride_h, window.pads[0], window.pads[1]);
  g.out_w = OutputSide(in_w, k_w, g.stride_w, window.pads[2], window.pads[3]);
  return g;
}

absl::Status CheckRank(const Tensor& t, const char* name) {
  if (t.dims() != 4) {
    return InvalidArgument(name, " must have rank 4, got shape ", t.shape().DebugString());
  }
  return absl::OkStatus();
}

absl::Status CheckWindowFits(const ConvGeometry& g) {
  if (g.out_h < 1 || g.out_w < 1) {
    return InvalidArgument("a ", g.k_h, "x", g.k_w, " filter does not fit a ", g.in_h, "x",
                           g.in_w, " input with these pads");
  }
  return absl::OkStatus();
}

// dy must have the output shape of g.
absl::Status CheckOutBackprop(const Tensor& dy, const ConvGeometry& g) {
  TF_RETURN_IF_ERROR(CheckRank(dy, "out_backprop"));
  if (dy.dim_size(0) != g.batch || dy.dim_size(1) != g.out_h || dy.dim_size(2) != g.out_w ||
      dy.dim_size(3) != g.out_c) {
    return InvalidArgument("out_backprop has shape ", dy.shape().DebugString(), ", expected [",
                           g.batch, ",", g.out_h, ",", g.out_w, ",", g.out_c, "]");
  }
  return absl::OkStatus();
}

// Runs units [0, units) of fn over the intra-op pool; cost: work per unit, in multiply-adds.
// Every thread flushes denormals to zero (inputs and results), whatever its caller set, as
// TensorFlow's own CPU kernels do: one rule for every path and thread.
template <class Fn>
void RunUnits(OpKernelContext* ctx, int64_t units, int64_t cost, const Fn& fn) {
  if (units <= 0) return;
  using SchedulingParams = ::tsl::thread::ThreadPool::SchedulingParams;
  ctx->device()->tensorflow_cpu_worker_threads()->workers->ParallelFor(
      units, SchedulingParams::Adaptive(std::max<int64_t>(cost, 1)),
      [&](int64_t begin, int64_t end) {
        const ::tsl::port::ScopedFlushDenormal flush;
        fn(begin, end);
      });
}

// Base of every op: the window attributes and the kernel table in force.
class FixedOrderOp : public OpKernel {
 public:
  explicit FixedOrderOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ReadWindow(ctx, &window_));
  }

 protected:
  // The table, or nullptr after failing ctx.
  const KernelTable* TableOrFail(OpKernelContext* ctx) {
    const KernelTable* table = Kernels();
    if (table == nullptr) {
      ctx->CtxFailure(__FILE__, __LINE__, InvalidArgument(
          "the fixed-order kernels need an x86-64 CPU with FMA (and AVX2 or AVX-512 for "
          "their vector paths), which this CPU lacks: run without --fixed_order_kernels"));
    }
    return table;
  }
  std::vector<int32_t> ReadSides(OpKernelConstruction* ctx, const char* name) {
    std::vector<int32_t> sides;
    const absl::Status read = ctx->GetAttr(name, &sides);
    if (!read.ok() || sides.size() != 2 || sides[0] < 1 || sides[1] < 1) {
      ctx->CtxFailure(__FILE__, __LINE__,
                      InvalidArgument(name, " must be two positive sides [h, w]"));
    }
    return sides;
  }
  Window window_;
};

// The filter: [KH, KW, channels, CO], or [KH, KW, channels, 1] for a depthwise convolution.
absl::Status CheckFilter(const Tensor& w, int64_t channels, bool depthwise) {
  TF_RETURN_IF_ERROR(CheckRank(w, "filter"));
  if (depthwise && w.dim_size(3) != 1) {
    return InvalidArgument("depthwise filter has channel multiplier ", w.dim_size(3),
                           "; the fixed-order kernels take 1");
  }
  if (w.dim_size(2) != channels) {
    return InvalidArgument("filter has ", w.dim_size(2), " input channels, expected ", channels);
  }
  return absl::OkStatus();
}

// Conv2D, or a depthwise convolution: input, filter -> output.
template <bool kDepthwise>
class ForwardOp : public FixedOrderOp {
 public:
  using FixedOrderOp::FixedOrderOp;
  void Compute(OpKernelContext* ctx) override {
    const Tensor& x = ctx->input(0);
    const Tensor& w = ctx->input(1);
    OP_REQUIRES_OK(ctx, CheckRank(x, "input"));
    OP_REQUIRES_OK(ctx, CheckFilter(w, x.dim_size(3), kDepthwise));
    const ConvGeometry g =
        Geometry(x.dim_size(0), x.dim_size(1), x.dim_size(2), x.dim_size(3), w.dim_size(0),
                 w.dim_size(1), kDepthwise ? x.dim_size(3) : w.dim_size(3), window_);
    OP_REQUIRES_OK(ctx, CheckWindowFits(g));
    Tensor* y = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({g.batch, g.out_h, g.out_w, g.out_c}),
                                             &y));
    const KernelTable* table = TableOrFail(ctx);
    if (table == nullptr) return;
    const auto run = kDepthwise ? table->depthwise_forward : table->conv_forward;
    const float* xp = x.flat<float>().data();
    const float* wp = w.flat<float>().data();
    float* yp = y->flat<float>().data();
    RunUnits(ctx, g.batch * g.out_h, g.out_w * g.out_c * g.k_h * g.k_w * (kDepthwise ? 1 : g.in_c),
             [&](int64_t b, int64_t e) { run(g, xp, wp, yp, b, e); });
  }
};

// The input gradient: filter, out_backprop -> the gradient of an input of input_hw.
template <bool kDepthwise>
class BackpropInputOp : public FixedOrderOp {
 public:
  explicit BackpropInputOp(OpKernelConstruction* ctx) : FixedOrderOp(ctx) {
    input_hw_ = ReadSides(ctx, "input_hw");
  }
  void Compute(OpKernelContext* ctx) override {
    const Tensor& w = ctx->input(0);
    const Tensor& dy = ctx->input(1);
    OP_REQUIRES_OK(ctx, CheckRank(dy, "out_backprop"));
    OP_REQUIRES_OK(ctx, CheckRank(w, "filter"));
    const int64_t in_c = kDepthwise ? dy.dim_size(3) : w.dim_size(2);
    OP_REQUIRES_OK(ctx, CheckFilter(w, in_c, kDepthwise));  // for Conv2D: its rank only
    const ConvGeometry g = Geometry(dy.dim_size(0), input_hw_[0], input_hw_[1], in_c,
                                    w.dim_size(0), w.dim_size(1),
                                    kDepthwise ? in_c : w.dim_size(3), window_);
    OP_REQUIRES_OK(ctx, CheckWindowFits(g));
    OP_REQUIRES_OK(ctx, CheckOutBackprop(dy, g));
    Tensor* dx = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({g.batch, g.in_h, g.in_w, g.in_c}),
                                             &dx));
    const KernelTable* table = TableOrFail(ctx);
    if (table == nullptr) return;
    const float* wp = w.flat<float>().data();
    Tensor w_t;
    if (!kDepthwise) {  // the filter with its channel axes swapped, [KH,KW,CO,CI]: lanes over CI
      OP_REQUIRES_OK(ctx, ctx->allocate_temp(tensorflow::DT_FLOAT,
                                             TensorShape({g.k_h, g.k_w, g.out_c, g.in_c}), &w_t));
      float* wtp = w_t.flat<float>().data();
      for (int64_t tap = 0; tap < g.k_h * g.k_w; ++tap)
        for (int64_t ci = 0; ci < g.in_c; ++ci)
          for (int64_t co = 0; co < g.out_c; ++co)
            wtp[(tap * g.out_c + co) * g.in_c + ci] = wp[(tap * g.in_c + ci) * g.out_c + co];
      wp = wtp;
    }
    const auto run = kDepthwise ? table->depthwise_backprop_input : table->conv_backprop_input;
    const float* dyp = dy.flat<float>().data();
    float* dxp = dx->flat<float>().data();
    RunUnits(ctx, g.batch * g.in_h,
             g.in_w * g.in_c * g.k_h * g.k_w * (kDepthwise ? 1 : g.out_c) /
                 (g.stride_h * g.stride_w),
             [&](int64_t b, int64_t e) { run(g, dyp, wp, dxp, b, e); });
  }

 private:
  std::vector<int32_t> input_hw_;
};

// The weight gradient: input, out_backprop -> the gradient of a filter of filter_hw.
template <bool kDepthwise>
class BackpropFilterOp : public FixedOrderOp {
 public:
  explicit BackpropFilterOp(OpKernelConstruction* ctx) : FixedOrderOp(ctx) {
    filter_hw_ = ReadSides(ctx, "filter_hw");
  }
  void Compute(OpKernelContext* ctx) override {
    const Tensor& x = ctx->input(0);
    const Tensor& dy = ctx->input(1);
    OP_REQUIRES_OK(ctx, CheckRank(x, "input"));
    OP_REQUIRES_OK(ctx, CheckRank(dy, "out_backprop"));
    const ConvGeometry g =
        Geometry(x.dim_size(0), x.dim_size(1), x.dim_size(2), x.dim_size(3), filter_hw_[0],
                 filter_hw_[1], kDepthwise ? x.dim_size(3) : dy.dim_size(3), window_);
    OP_REQUIRES_OK(ctx, CheckWindowFits(g));
    OP_REQUIRES_OK(ctx, CheckOutBackprop(dy, g));
    Tensor* dw = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(
                            0, TensorShape({g.k_h, g.k_w, g.in_c, kDepthwise ? 1 : g.out_c}), &dw));
    const KernelTable* table = TableOrFail(ctx);
    if (table == nullptr) return;
    dw->flat<float>().setZero();  // the chains start from +0 in dw itself
    const auto run = kDepthwise ? table->depthwise_backprop_filter : table->conv_backprop_filter;
    const int64_t units = kDepthwise ? table->depthwise_backprop_filter_units(g)
                                     : table->conv_backprop_filter_units(g);
    if (units == 0) return;  // no channels: dw is empty
    const float* xp = x.flat<float>().data();
    const float* dyp = dy.flat<float>().data();
    float* dwp = dw->flat<float>().data();
    RunUnits(ctx, units,
             g.batch * g.out_h * g.out_w * g.in_c * g.k_h * g.k_w * (kDepthwise ? 1 : g.out_c) /
                 units,
             [&](int64_t b, int64_t e) { run(g, xp, dyp, dwp, b, e); });
  }

 private:
  std::vector<int32_t> filter_hw_;
};

// ---- Shape functions

absl::Status SidesAttr(InferenceContext* c, const char* name, std::vector<int32_t>* v) {
  TF_RETURN_IF_ERROR(c->GetAttr(name, v));
  if (v->size() != 2) return InvalidArgument(name, " must be [h, w]");
  return absl::OkStatus();
}

// A spatial output side from an input side, or unknown.
DimensionHandle OutSide(InferenceContext* c, DimensionHandle in, int64_t k, int64_t stride,
                        int64_t pad_before, int64_t pad_after) {
  if (!c->ValueKnown(in) || k < 0) return c->UnknownDim();
  return c->MakeDim(OutputSide(c->Value(in), k, stride, pad_before, pad_after));
}

absl::Status ForwardShape(InferenceContext* c, bool depthwise) {
  ShapeHandle x, w;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 4, &x));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 4, &w));
  Window window;
  TF_RETURN_IF_ERROR(ReadWindow(c, &window));
  const std::vector<int32_t>& strides = window.strides;
  const std::vector<int32_t>& pads = window.pads;
  auto known = [&](DimensionHandle d) { return c->ValueKnown(d) ? c->Value(d) : -1; };
  const int64_t k_h = known(c->Dim(w, 0)), k_w = known(c->Dim(w, 1));
  c->set_output(0, c->MakeShape({c->Dim(x, 0),
                                 OutSide(c, c->Dim(x, 1), k_h, strides[0], pads[0], pads[1]),
                                 OutSide(c, c->Dim(x, 2), k_w, strides[1], pads[2], pads[3]),
                                 depthwise ? c->Dim(x, 3) : c->Dim(w, 3)}));
  return absl::OkStatus();
}

absl::Status BackpropInputShape(InferenceContext* c, bool depthwise) {
  ShapeHandle w, dy;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 4, &w));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 4, &dy));
  std::vector<int32_t> hw;
  TF_RETURN_IF_ERROR(SidesAttr(c, "input_hw", &hw));
  c->set_output(0, c->MakeShape({c->Dim(dy, 0), hw[0], hw[1],
                                 depthwise ? c->Dim(dy, 3) : c->Dim(w, 2)}));
  return absl::OkStatus();
}

absl::Status BackpropFilterShape(InferenceContext* c, bool depthwise) {
  ShapeHandle x, dy;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 4, &x));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 4, &dy));
  std::vector<int32_t> hw;
  TF_RETURN_IF_ERROR(SidesAttr(c, "filter_hw", &hw));
  c->set_output(0, c->MakeShape({hw[0], hw[1], c->Dim(x, 3),
                                 depthwise ? c->MakeDim(1) : c->Dim(dy, 3)}));
  return absl::OkStatus();
}

}  // namespace

#define REPROSEG_WINDOW_ATTRS Attr("strides: list(int)").Attr("pads: list(int)")

REGISTER_OP("ReprosegConv2D")
    .Input("input: float")
    .Input("filter: float")
    .Output("output: float")
    .REPROSEG_WINDOW_ATTRS
    .SetShapeFn([](InferenceContext* c) { return ForwardShape(c, false); })
    .Doc("Conv2D, NHWC, filter [KH,KW,CI,CO], explicit pads [top,bottom,left,right]; each "
         "output is one FMA chain over (kh, kw, ci).");

REGISTER_OP("ReprosegConv2DBackpropInput")
    .Input("filter: float")
    .Input("out_backprop: float")
    .Output("output: float")
    .Attr("input_hw: list(int)")
    .REPROSEG_WINDOW_ATTRS
    .SetShapeFn([](InferenceContext* c) { return BackpropInputShape(c, false); })
    .Doc("The input gradient of ReprosegConv2D (a transposed convolution); each output is one "
         "FMA chain over (kh, kw, co).");

REGISTER_OP("ReprosegConv2DBackpropFilter")
    .Input("input: float")
    .Input("out_backprop: float")
    .Output("output: float")
    .Attr("filter_hw: list(int)")
    .REPROSEG_WINDOW_ATTRS
    .SetShapeFn([](InferenceContext* c) { return BackpropFilterShape(c, false); })
    .Doc("The weight gradient of ReprosegConv2D; each output is one FMA chain over "
         "(n, oh, ow).");

REGISTER_OP("ReprosegDepthwiseConv2D")
    .Input("input: float")
    .Input("filter: float")
    .Output("output: float")
    .REPROSEG_WINDOW_ATTRS
    .SetShapeFn([](InferenceContext* c) { return ForwardShape(c, true); })
    .Doc("Depthwise convolution, channel multiplier 1, filter [KH,KW,C,1]; each output is one "
         "FMA chain over (kh, kw).");

REGISTER_OP("ReprosegDepthwiseConv2DBackpropInput")
    .Input("filter: float")
    .Input("out_backprop: float")
    .Output("output: float")
    .Attr("input_hw: list(int)")
    .REPROSEG_WINDOW_ATTRS
    .SetShapeFn([](InferenceContext* c) { return BackpropInputShape(c, true); })
    .Doc("The input gradient of ReprosegDepthwiseConv2D; chains over (kh, kw).");

REGISTER_OP("ReprosegDepthwiseConv2DBackpropFilter")
    .Input("input: float")
    .Input("out_backprop: float")
    .Output("output: float")
    .Attr("filter_hw: list(int)")
    .REPROSEG_WINDOW_ATTRS
    .SetShapeFn([](InferenceContext* c) { return BackpropFilterShape(c, true); })
    .Doc("The weight gradient of ReprosegDepthwiseConv2D; chains over (n, oh, ow).");

#define REPROSEG_CPU_KERNEL(name, cls) \
  REGISTER_KERNEL_BUILDER(Name(name).Device(::tensorflow::DEVICE_CPU), cls)
REPROSEG_CPU_KERNEL("ReprosegConv2D", ForwardOp<false>);
REPROSEG_CPU_KERNEL("ReprosegConv2DBackpropInput", BackpropInputOp<false>);
REPROSEG_CPU_KERNEL("ReprosegConv2DBackpropFilter", BackpropFilterOp<false>);
REPROSEG_CPU_KERNEL("ReprosegDepthwiseConv2D", ForwardOp<true>);
REPROSEG_CPU_KERNEL("ReprosegDepthwiseConv2DBackpropInput", BackpropInputOp<true>);
REPROSEG_CPU_KERNEL("ReprosegDepthwiseConv2DBackpropFilter", BackpropFilterOp<true>);

}  // namespace reproseg_fixed_order

// For kernels/fixed_order.py through ctypes: force one path (tests), or read which runs.
extern "C" {

// path: 0 auto, 1 scalar, 2 AVX2, 3 AVX-512. Returns 0, or -1 if this CPU cannot run it.
int ReprosegFixedOrderSetPath(int path) {
  using namespace reproseg_fixed_order;
  if (path != kAuto && !CpuCanRun(path)) return -1;
  if (path < kAuto || path > kAvx512) return -1;
  forced_path.store(path);
  return 0;
}

// The name of the kernel table the ops run ("avx512", "avx2", "scalar"), or "" if none.
const char* ReprosegFixedOrderPath() {
  const reproseg_fixed_order::KernelTable* table = reproseg_fixed_order::Kernels();
  return table == nullptr ? "" : table->name;
}

}  // extern "C"
