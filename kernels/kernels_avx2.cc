// The fixed-order kernels for 8 lanes (AVX2 with FMA); compiled with this
// instruction set's flags (kernels/BUILD.bazel, ISA_COPTS["avx2"]).
#include "kernels/conv_kernels.h"

namespace reproseg_fixed_order {

const KernelTable& Avx2Kernels() {
  static const KernelTable table = MakeKernelTable<Avx2Lanes>("avx2");
  return table;
}

}  // namespace reproseg_fixed_order
