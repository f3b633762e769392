"""The compiler flags of the fixed-order kernels: one place, read by kernels/BUILD.bazel and,
as literals, by pipeline/code.py for the stage keys (this file is valid Python and Starlark).

COPTS hold for every file: -ffp-contract=off so that the compiler fuses no multiply and add
that the code does not write as one (GCC's default for C++ is to fuse), -O3 so that the
register blocks stay in registers (at -O2 GCC 12 kept them in memory: 6-7x slower).
ISA_COPTS: each instruction set's translation unit; the scalar reference gets FMA (std::fma
becomes one instruction, as the vector paths' fused multiply-add) and no auto-vectorization.
"""

COPTS = [
    "-std=c++17",
    "-O3",
    "-ffp-contract=off",
    "-fno-fast-math",
]

ISA_COPTS = {
    "scalar": ["-mfma", "-fno-tree-vectorize"],
    "avx2": ["-mavx2", "-mfma"],
    "avx512": ["-mavx512f", "-mfma"],
}
