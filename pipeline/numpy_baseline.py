"""NumPy held at its baseline SIMD code, for float results with the same bits on x86-64 CPUs
of every instruction set (measured on the four below).

At import NumPy picks, per function, loops compiled for the CPU's extensions (X86_V3: AVX2 and
FMA; X86_V4 and later: AVX-512), whose exp, log and the like may round the last bit otherwise
than its baseline (X86_V2) loops. Measured here with Optuna's TPE sampler (24 trials, seed 1):
native Zen 4 (AVX-512), emulated Haswell (AVX2) and emulated Westmere (SSE4.2) proposed
different trials from the 10th on; with NPY_DISABLE_CPU_FEATURES naming every dispatch target,
all three, and emulated EPYC-Rome, proposed the same 24.

hold() must run before NumPy is imported: it is for the main of a process of its own.
"""

import os
import sys

VARIABLE = "NPY_DISABLE_CPU_FEATURES"
# The dispatch targets of the NumPy that requirements.lock pins (2.4's
# numpy._core._multiarray_umath.__cpu_dispatch__); check() refuses a NumPy with others.
TARGETS = ("X86_V3", "X86_V4", "AVX512_ICL", "AVX512_SPR")


def hold():
  """Disables every NumPy dispatch target in this process, then check()s it.

  Raises RuntimeError if NumPy is imported already (it would keep its loops).
  """
  if "numpy" in sys.modules:
    raise RuntimeError("numpy_baseline.hold() runs before NumPy is imported; it was imported")
  os.environ[VARIABLE] = " ".join(TARGETS)
  check()


def check():
  """Raises RuntimeError unless NumPy runs its baseline loops only."""
  from numpy._core import _multiarray_umath as umath  # pylint: disable=g-import-not-at-top
  active = [t for t in umath.__cpu_dispatch__ if umath.__cpu_features__.get(t)]
  unknown = sorted(set(umath.__cpu_dispatch__) - set(TARGETS))
  if unknown:
    raise RuntimeError("NumPy has dispatch targets %s that pipeline/numpy_baseline.py's TARGETS "
                       "does not list: add them" % ", ".join(unknown))
  if active:
    raise RuntimeError("NumPy runs its %s loops: %s was not set before NumPy loaded (hold())"
                       % (", ".join(active), VARIABLE))
