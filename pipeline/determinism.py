"""The seed and the determinism switches, as absl flags that every stage accepts.

Every random number in reproseg comes from one --seed (pipeline.seeds), and every switch that
can change the bits of a result is in the stage key. Two modes:

- portable (the default): every convolution and Dense layer runs on the fixed-order kernels
  (kernels/fixed_order.py), whose summation order the code sets, and the rest of the model
  on seg/model/exact_layers.py, so the bits follow neither the CPU model, nor its instruction set,
  nor the thread count: one result for every x86-64 CPU with AVX2 and FMA, on all its cores
  (docs/determinism.md);
- same-machine (--noportable): oneDNN's kernels and Keras' layers; the same bits only on the
  same machine, so the key records the machine.

The switches that act through the environment (oneDNN) must be set before TensorFlow is
imported: stages call apply() first and import their TensorFlow code after it.
"""

import contextlib
import dataclasses
import os
import sys

from absl import flags

from pipeline import digest
from pipeline import errors
from pipeline import seeds
from pipeline import tensorflow_startup

FLAGS = flags.FLAGS

flags.DEFINE_integer(
    "seed", 42,
    "The one seed of a run. Python, NumPy, TensorFlow and Keras seeds, initialisers, dropout, "
    "shuffling, augmentation and the synthetic dataset are all derived from it "
    "(pipeline.seeds.derive_seed); each stage's manifest lists the seeds its own "
    "build derived, and the synthetic data's seed is in its stage's key.")
flags.DEFINE_bool(
    "deterministic", True,
    "Op determinism: tf.config.experimental.enable_op_determinism() through NVIDIA's "
    "framework-reproducibility (fwr13y), plus TF_CUDNN_DETERMINISTIC=1 for cuDNN on a GPU "
    "(the GPU part is untested here: no GPU). --nodeterministic is the seed's fast_n_close.")
flags.DEFINE_bool(
    "portable", True,
    "One result for every x86-64 CPU with AVX2 and FMA, whatever its model, instruction set, "
    "cache sizes and thread count: every convolution and Dense layer on the fixed-order "
    "kernels, batch norm without the approximate rsqrt (--fixed_order_kernels, "
    "--exact_layers), and the thread pools, oneDNN's instruction set and the machine out of "
    "the key. On a CPU without AVX2 and FMA it stops with an error. "
    "--noportable: oneDNN's kernels and Keras' layers, pools that follow the visible cores; "
    "the same bits only on the same machine, and the stage key records the machine (CPU "
    "model, flags, visible cores).")
flags.DEFINE_integer(
    "inter_op_threads", None,
    "TensorFlow's inter-op thread pool size; 0 (the default) lets TensorFlow size it from the "
    "visible cores. In portable mode it does not change the bits, and is not in the key.")
flags.DEFINE_integer(
    "intra_op_threads", None,
    "TensorFlow's intra-op thread pool size; 0 (the default) lets TensorFlow size it from the "
    "visible cores. In portable mode it does not change the bits, and is not in the key; with "
    "--noportable oneDNN splits sums by it, so it does.")
flags.DEFINE_bool(
    "onednn", True,
    "Use oneDNN's CPU kernels (TF_ENABLE_ONEDNN_OPTS) for what the fixed-order kernels do "
    "not compute (everything with --noportable, where on and off give different bits). In "
    "the key in both modes.")
flags.DEFINE_string(
    "onednn_max_cpu_isa", None,
    "Cap on the instruction set oneDNN may use (ONEDNN_MAX_CPU_ISA): SSE41, AVX, AVX2, "
    "AVX512_CORE, ...; 'native' (the default) leaves it to the CPU. An experiment switch: in "
    "portable mode no convolution is oneDNN's, the cap does not change the bits (shown for "
    "AVX2 against native) and is not in the key; with --noportable it is, with the machine.")

flags.DEFINE_bool(
    "exact_layers", None,
    "Build the U-Net's batch norms from seg/model/exact_layers.py (no approximate rsqrt "
    "instruction, whose bits follow the CPU model). Default: on with --portable, which needs "
    "it, else off (Keras' batch-norm formula).")

flags.DEFINE_bool(
    "fixed_order_kernels", None,
    "Compute every convolution and Dense layer of the U-Net with kernels/fixed_order.py, whose "
    "summation order the code fixes for every CPU and thread count (docs/determinism.md, "
    "\"The fixed-order kernels\"); needs --exact_layers. Default: on with --portable, which "
    "needs it, else off (oneDNN's kernels).")

ISA_VALUES = ("native", "SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE",
              "AVX512_CORE_VNNI", "AVX512_CORE_BF16", "AVX10_1_512", "AVX512_CORE_AMX",
              "AVX10_1_512_AMX", "AVX10_1_512_AMX_FP16", "DEFAULT")
# The switches that do not change portable bits (tests/determinism_test.py shows it), so
# portable keys leave them out, with their default in both modes.
MACHINE_SWITCHES = {"inter_op_threads": 0, "intra_op_threads": 0, "onednn_max_cpu_isa": "native"}
PORTABLE_DEFAULTS = dict(MACHINE_SWITCHES, exact_layers=True, fixed_order_kernels=True)
MACHINE_DEFAULTS = dict(MACHINE_SWITCHES, exact_layers=False, fixed_order_kernels=False)
# What portable mode needs from the CPU, as NumPy names the CPUID features. The scalar path
# of the kernels gives the same bits without them, but TensorFlow's other ops were shown on
# such CPUs only.
PORTABLE_CPU_FEATURES = ("AVX2", "FMA3")
PORTABLE_CPU = "x86-64 with AVX2 and FMA"


def _cpuinfo(field):
  """The first value of a /proc/cpuinfo field ("model name", "flags"), or None."""
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.split(":", 1)[0].strip() == field:
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return None


def cpu_model():
  return _cpuinfo("model name") or "unknown"


def cpu_features():
  """{feature: bool} as the CPU reports them through CPUID (what oneDNN reads too).

  NumPy's runtime dispatch table: /proc/cpuinfo would show the host under an emulator.
  """
  from numpy._core import _multiarray_umath  # pylint: disable=g-import-not-at-top
  return dict(_multiarray_umath.__cpu_features__)


def check_cpu(settings):
  """Raises errors.Error if portable settings run on a CPU without PORTABLE_CPU_FEATURES."""
  if not settings.portable:
    return
  features = cpu_features()
  missing = [f for f in PORTABLE_CPU_FEATURES if not features.get(f)]
  if missing:
    raise errors.Error(
        "portable bits were shown on %s CPUs, and this CPU lacks %s: pass --noportable for "
        "results tied to this machine, or run on a CPU with %s"
        % (PORTABLE_CPU, ", ".join(missing), " and ".join(PORTABLE_CPU_FEATURES)))


def machine_record():
  """What makes a same-machine result differ elsewhere: CPU model, flags, visible cores."""
  cpu_flags = _cpuinfo("flags") or ""
  return {"cpu_model": cpu_model(),
          "cpu_flags_sha256": digest.bytes_digest(" ".join(sorted(cpu_flags.split())).encode()),
          "visible_cores": len(os.sched_getaffinity(0))}


@dataclasses.dataclass(frozen=True)
class Settings:
  seed: int = 42
  deterministic: bool = True
  portable: bool = True
  inter_op_threads: int = PORTABLE_DEFAULTS["inter_op_threads"]
  intra_op_threads: int = PORTABLE_DEFAULTS["intra_op_threads"]
  onednn: bool = True
  onednn_max_cpu_isa: str = PORTABLE_DEFAULTS["onednn_max_cpu_isa"]
  exact_layers: bool = PORTABLE_DEFAULTS["exact_layers"]
  fixed_order_kernels: bool = PORTABLE_DEFAULTS["fixed_order_kernels"]

  def __post_init__(self):
    if self.onednn_max_cpu_isa not in ISA_VALUES:
      raise errors.Error("--onednn_max_cpu_isa=%s is not one of %s"
                         % (self.onednn_max_cpu_isa, ", ".join(ISA_VALUES)))
    for name in ("inter_op_threads", "intra_op_threads"):
      if getattr(self, name) < 0:
        raise errors.Error("--%s=%d: use 0 (TensorFlow's choice) or a positive count"
                           % (name, getattr(self, name)))
    if self.portable and not (self.exact_layers and self.fixed_order_kernels):
      raise errors.Error(
          "--portable needs --exact_layers and --fixed_order_kernels: with Keras' own layers "
          "or oneDNN's kernels the bits follow the machine. Keep the defaults, or pass "
          "--noportable")
    if self.fixed_order_kernels and not self.exact_layers:
      raise errors.Error("--fixed_order_kernels needs --exact_layers (the batch norms without "
                         "the approximate rsqrt): pass both, or neither")

  def record(self):
    """For stage keys: the switches that change the bits, and what portable mode needs of
    the CPU; with --noportable every switch and the machine itself."""
    record = dataclasses.asdict(self)
    if self.portable:
      for name in MACHINE_SWITCHES:
        del record[name]
      record["cpu"] = PORTABLE_CPU
    else:
      record["machine"] = machine_record()
    return record

  def environment(self):
    """The environment variables these settings need before TensorFlow loads."""
    env = {"TF_ENABLE_ONEDNN_OPTS": "1" if self.onednn else "0",
           "TF_CUDNN_DETERMINISTIC": "1" if self.deterministic else "0"}
    if self.onednn_max_cpu_isa != "native":
      env["ONEDNN_MAX_CPU_ISA"] = self.onednn_max_cpu_isa
    return env


def resolve(seed=42, deterministic=True, portable=True, onednn=True, **switches):
  """Settings with the switches of PORTABLE_DEFAULTS that are unset (or None) filled in from
  the mode's defaults."""
  defaults = PORTABLE_DEFAULTS if portable else MACHINE_DEFAULTS
  unknown = set(switches) - set(defaults)
  if unknown:
    raise TypeError("unknown switches %s" % sorted(unknown))
  filled = {k: defaults[k] if switches.get(k) is None else switches[k] for k in defaults}
  return Settings(seed=seed, deterministic=deterministic, portable=portable, onednn=onednn,
                  **filled)


def from_flags():
  return resolve(seed=FLAGS.seed, deterministic=FLAGS.deterministic, portable=FLAGS.portable,
                 onednn=FLAGS.onednn, **{k: getattr(FLAGS, k) for k in PORTABLE_DEFAULTS})


def set_environment(settings):
  """Sets the environment switches; fails if TensorFlow already loaded under other ones."""
  env = settings.environment()
  if "tensorflow" in sys.modules:
    wanted = dict(env)
    current = {k: os.environ.get(k) for k in set(wanted) | {"ONEDNN_MAX_CPU_ISA"}}
    wanted.setdefault("ONEDNN_MAX_CPU_ISA", None)
    if current != wanted:
      raise RuntimeError(
          "TensorFlow was imported before the determinism switches were set (%s wanted, %s "
          "in force): call pipeline.determinism.apply() before importing TensorFlow."
          % (wanted, current))
  os.environ.pop("ONEDNN_MAX_CPU_ISA", None)
  os.environ.update(env)


def describe(settings):
  """One line for the terminal: the mode and switches in force."""
  pools = "/".join(str(n) if n else "TensorFlow's" for n in (settings.inter_op_threads,
                                                             settings.intra_op_threads))
  onednn = "off"
  if settings.onednn:
    onednn = ("capped at " + settings.onednn_max_cpu_isa
              if settings.onednn_max_cpu_isa != "native" else "native")
  return ("determinism: %s, seed %d, op determinism %s, thread pools %s, oneDNN %s%s%s"
          % ("portable (%s)" % PORTABLE_CPU if settings.portable
             else "same-machine (--noportable)", settings.seed,
             "on" if settings.deterministic else "off", pools, onednn,
             ", exact layers" if settings.exact_layers else "",
             ", fixed-order kernels" if settings.fixed_order_kernels else ""))


def apply(settings):
  """Puts the settings in force for this process: environment, TensorFlow, seeds; prints
  describe(settings) in place of TensorFlow's start-up lines (pipeline.tensorflow_startup).

  Raises errors.Error if this CPU cannot give the portable bits (check_cpu).
  """
  check_cpu(settings)
  set_environment(settings)
  with tensorflow_startup.quiet():
    _start_tensorflow(settings)
  print(describe(settings), file=sys.stderr, flush=True)


def _start_tensorflow(settings):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import keras  # pylint: disable=g-import-not-at-top
  try:
    tf.config.threading.set_inter_op_parallelism_threads(settings.inter_op_threads)
    tf.config.threading.set_intra_op_parallelism_threads(settings.intra_op_threads)
  except RuntimeError as e:
    if (tf.config.threading.get_inter_op_parallelism_threads() != settings.inter_op_threads or
        tf.config.threading.get_intra_op_parallelism_threads() != settings.intra_op_threads):
      raise RuntimeError("TensorFlow already started with other thread pools: %s" % e) from e
  tf.config.list_physical_devices()  # CUDA probing happens here, inside quiet()
  if settings.deterministic:
    from fwr13y.d9m.tensorflow import enable_determinism  # pylint: disable=g-import-not-at-top
    with contextlib.redirect_stdout(sys.stderr):  # its notice is not a result
      enable_determinism()
  # Op determinism is off unless enabled, and cannot be switched off again: nothing to do.
  keras.utils.set_random_seed(seeds.derive_seed(settings.seed, "global"))
