// The fixed-order kernels for 16 lanes (AVX-512F); compiled with this
// instruction set's flags (kernels/BUILD.bazel, ISA_COPTS["avx512"]).
#include "kernels/conv_kernels.h"

namespace reproseg_fixed_order {

const KernelTable& Avx512Kernels() {
  static const KernelTable table = MakeKernelTable<Avx512Lanes>("avx512");
  return table;
}

}  // namespace reproseg_fixed_order
