// The fixed-order kernels for std::fma on one lane: the reference every vector path must equal; compiled with this
// instruction set's flags (kernels/BUILD.bazel, ISA_COPTS["scalar"]).
#include "kernels/conv_kernels.h"

namespace reproseg_fixed_order {

const KernelTable& ScalarKernels() {
  static const KernelTable table = MakeKernelTable<ScalarLanes>("scalar");
  return table;
}

}  // namespace reproseg_fixed_order
