"""The seed and the determinism switches, as absl flags that every stage accepts.

Every random number in reproseg comes from one --seed (pipeline.seeds), and every switch that
can change the bits of a result is in the stage key. Two modes:

- portable (the default): the thread pools have fixed sizes and the model uses
  seg/exact_layers.py, so the bits follow neither the machine's core count nor its CPU model
  within an instruction-set class (AVX2, or the AVX-512 class of a CPU's vendor and L2 size;
  the key records the class), at oneDNN's full speed (docs/determinism.md);
- same-machine (--noportable): pools follow the cores and the model uses Keras' layers;
  faster, and the same bits only on the same machine, so the key records the machine.

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
    "The same bits on any x86-64 machine of one instruction-set class (AVX2, or the AVX-512 "
    "class of a CPU vendor and L2 size; the key records the class): fixed thread pools (4 and "
    "4) and CPU-independent layers "
    "(seg/exact_layers.py); oneDNN runs the CPU's own instruction set unless capped below "
    "(--onednn_max_cpu_isa=AVX2 puts an AVX-512 machine in the AVX2 class). On a CPU without "
    "AVX2 it stops with an error. "
    "--noportable: pools follow the visible cores and the model uses Keras' batch-norm "
    "formula and transposed convolutions; faster, the same bits only on the same machine, and "
    "the stage key records the machine (CPU model, flags, visible cores).")
flags.DEFINE_integer(
    "inter_op_threads", None,
    "TensorFlow's inter-op thread pool size; 0 lets TensorFlow size it from the visible cores. "
    "Default: 4 with --portable, else 0.")
flags.DEFINE_integer(
    "intra_op_threads", None,
    "TensorFlow's intra-op thread pool size. The pool size changes the bits of the result; "
    "0 lets TensorFlow size it from the visible cores, so the bits follow the machine. "
    "Default: 4 with --portable (docs/determinism.md says why 4), else 0.")
flags.DEFINE_bool(
    "onednn", True,
    "Use oneDNN's CPU kernels (TF_ENABLE_ONEDNN_OPTS). On and off give different bits.")
flags.DEFINE_string(
    "onednn_max_cpu_isa", None,
    "Cap on the instruction set oneDNN may use (ONEDNN_MAX_CPU_ISA): SSE41, AVX, AVX2, "
    "AVX512_CORE, ...; 'native' leaves it to the CPU. With --portable the key records the "
    "instruction-set class it gives on this CPU (AVX-512 (vendor, L2 size), AVX2, ...), else "
    "the cap and the machine. Default: native.")

flags.DEFINE_bool(
    "exact_layers", None,
    "Build the U-Net from seg/exact_layers.py: batch norm without the approximate rsqrt "
    "instruction, transposed convolutions summed over fixed channel chunks; their bits do not "
    "follow the CPU model. Default: on with --portable, else off (Keras' batch-norm formula "
    "and transposed convolutions).")

flags.DEFINE_bool(
    "fixed_order_kernels", None,
    "Compute every convolution and Dense layer of the U-Net with kernels/fixed_order.py, whose "
    "summation order the code fixes for every CPU and thread count (docs/determinism.md, "
    "\"The fixed-order kernels\"); needs --exact_layers. Default: off (oneDNN's kernels), "
    "while its bits are being shown across CPUs.")

ISA_VALUES = ("native", "SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE",
              "AVX512_CORE_VNNI", "AVX512_CORE_BF16", "AVX10_1_512", "AVX512_CORE_AMX",
              "AVX10_1_512_AMX", "AVX10_1_512_AMX_FP16", "DEFAULT")
PORTABLE_DEFAULTS = {"inter_op_threads": 4, "intra_op_threads": 4, "onednn_max_cpu_isa": "native",
                     "exact_layers": True, "fixed_order_kernels": False}
MACHINE_DEFAULTS = {"inter_op_threads": 0, "intra_op_threads": 0, "onednn_max_cpu_isa": "native",
                    "exact_layers": False, "fixed_order_kernels": False}


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


# What each instruction-set cap needs from the CPU: on a CPU without it, oneDNN silently
# runs a lower instruction set and the bits change, so portable mode refuses to run. Portable
# bits were shown on AVX2 and AVX-512 CPUs only: "native" needs AVX2's features too.
ISA_CPU_FEATURES = {
    "native": ("AVX2", "FMA3"),
    "SSE41": ("SSE41",),
    "AVX": ("AVX",),
    "AVX2": ("AVX2", "FMA3"),
    "AVX512_CORE": ("AVX512F", "AVX512BW", "AVX512VL", "AVX512DQ"),
}


def cpu_features():
  """{feature: bool} as the CPU reports them through CPUID (what oneDNN reads too).

  NumPy's runtime dispatch table: /proc/cpuinfo would show the host under an emulator.
  """
  from numpy._core import _multiarray_umath  # pylint: disable=g-import-not-at-top
  return dict(_multiarray_umath.__cpu_features__)


def _avx512_family(isa):
  return isa.startswith(("AVX512", "AVX10"))


def _needed_features(isa):
  """The CPU features an --onednn_max_cpu_isa value needs in portable mode."""
  if _avx512_family(isa):
    return ISA_CPU_FEATURES["AVX512_CORE"]
  return ISA_CPU_FEATURES.get(isa, ISA_CPU_FEATURES["native"])  # native, DEFAULT, AVX2_VNNI...


def check_cpu(settings):
  """Raises errors.Error if this CPU lacks what the portable settings' oneDNN needs."""
  if not settings.portable:
    return
  isa = settings.onednn_max_cpu_isa
  features = cpu_features()
  missing = [f for f in _needed_features(isa) if not features.get(f)]
  if not missing and onednn_isa_class(settings).startswith("AVX-512") and not (
      _cpuinfo("vendor_id") and l2_cache_kib()):
    raise errors.Error(
        "portable mode names this CPU's AVX-512 class by its vendor and L2 cache size, and the "
        "kernel does not tell both (/proc/cpuinfo's vendor_id, "
        "/sys/devices/system/cpu/cpu0/cache): pass --onednn_max_cpu_isa=AVX2 for the AVX2 "
        "class, which every CPU shares, or --noportable")
  if missing:
    raise errors.Error(
        "portable mode runs oneDNN %s, but this CPU lacks %s, so it would run other code "
        "than any machine whose bits were shown: pass --noportable for results tied to this "
        "machine, or run on a CPU with %s"
        % ("at the CPU's own instruction set" if isa == "native" else "capped at " + isa,
           ", ".join(missing), " and ".join(_needed_features(isa))))


def l2_cache_kib():
  """The L2 cache of cpu0 in KiB, as the kernel reports it (sysfs), or None."""
  folder = "/sys/devices/system/cpu/cpu0/cache"
  try:
    for index in sorted(os.listdir(folder)):
      with open(os.path.join(folder, index, "level")) as f:
        if f.read().strip() != "2":
          continue
      with open(os.path.join(folder, index, "size")) as f:
        size = f.read().strip()  # "1024K", "2M"
      return int(size[:-1]) * {"K": 1, "M": 1024}[size[-1]]
  except (OSError, ValueError, KeyError):
    pass
  return None


def avx512_class():
  """The AVX-512 class of this CPU: "AVX-512 (<CPUID vendor>, L2 <size> KiB)" (check_cpu
  refuses portable mode where the kernel does not tell them).

  Measured: the tiny pipeline's train output under AVX-512 differs between an Intel Xeon
  (model 207, 2 MiB L2) and an AMD EPYC Zen 4 (1 MiB L2), where the AVX2 class agrees
  (docs/determinism.md, "Limits, honestly"). Which of their traits changes oneDNN's kernels
  was not isolated (QEMU emulates no AVX-512); oneDNN's blocking follows the cache sizes it
  reads, and these two traits tell the two CPUs apart.
  """
  return "AVX-512 (%s, L2 %s KiB)" % (_cpuinfo("vendor_id"), l2_cache_kib())


def onednn_isa_class(settings):
  """The instruction-set class oneDNN runs on this CPU under these settings: the CPU's
  avx512_class() (the AVX512_CORE family), or the cap below it ("AVX2", ...). Portable bits
  are shared within a class; across classes a convolution's forward pass can differ
  (docs/determinism.md)."""
  isa = settings.onednn_max_cpu_isa
  if isa in ("native", "DEFAULT") or _avx512_family(isa):
    if all(cpu_features().get(f) for f in ISA_CPU_FEATURES["AVX512_CORE"]):
      return avx512_class()
    return "AVX2" if isa in ("native", "DEFAULT") else isa
  return isa


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
    if self.fixed_order_kernels and not self.exact_layers:
      raise errors.Error("--fixed_order_kernels needs --exact_layers (the batch norms without "
                         "the approximate rsqrt): pass both, or neither")
    if self.portable and (self.intra_op_threads == 0 or not self.exact_layers):
      raise errors.Error(
          "--portable needs a fixed --intra_op_threads and --exact_layers: with TensorFlow's "
          "pool or Keras' own layers the bits follow the machine. Keep the defaults, or pass "
          "--noportable")

  def record(self):
    """For stage keys: the switches, plus what they leave to the machine: oneDNN's
    instruction-set class in portable mode, the machine itself otherwise."""
    record = dataclasses.asdict(self)
    if not self.portable:
      record["machine"] = machine_record()
    elif self.onednn:
      # The class, not the cap: an AVX-512 CPU capped at AVX2 and an AVX2-only CPU run the
      # same code, and share results.
      del record["onednn_max_cpu_isa"]
      record["onednn_isa_class"] = onednn_isa_class(self)
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
  return ("determinism: %s, seed %d, op determinism %s, thread pools %s, oneDNN %s%s"
          % ("portable" if settings.portable else "same-machine (--noportable)", settings.seed,
             "on" if settings.deterministic else "off", pools,
             ("capped at " + settings.onednn_max_cpu_isa
              if settings.onednn_max_cpu_isa != "native" else "native")
             + (", class %s" % onednn_isa_class(settings) if settings.portable else "")
             if settings.onednn else "off",
             ", exact layers" if settings.exact_layers else "")
          + (", fixed-order kernels" if settings.fixed_order_kernels else ""))


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
