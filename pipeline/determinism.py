"""Seeds and determinism switches, as absl flags that every stage accepts.

Every random number in reproseg comes from one --seed through derive_seed(seed, purpose...),
and every switch that can change the bits of a result is recorded in the stage key. The
switches that act through the environment (oneDNN) must be set before TensorFlow is
imported: stages call apply() first and import their TensorFlow code after it.
"""

import dataclasses
import hashlib
import os
import sys

from absl import flags

from pipeline import digest

FLAGS = flags.FLAGS

flags.DEFINE_integer(
    "seed", 42,
    "The one seed of a run. Python, NumPy, TensorFlow and Keras seeds, initialisers, dropout, "
    "shuffling, augmentation and the synthetic dataset are all derived from it "
    "(pipeline.determinism.derive_seed), and the manifest records each derived seed.")
flags.DEFINE_bool(
    "deterministic", True,
    "Op determinism: tf.config.experimental.enable_op_determinism() through NVIDIA's "
    "framework-reproducibility (fwr13y), plus TF_CUDNN_DETERMINISTIC=1 for cuDNN on a GPU "
    "(the GPU part is untested here: no GPU). --nodeterministic is the seed's fast_n_close.")
flags.DEFINE_integer(
    "inter_op_threads", 2,
    "TensorFlow's inter-op thread pool size. 0 lets TensorFlow pick from the visible cores, "
    "which makes the result follow the machine.")
flags.DEFINE_integer(
    "intra_op_threads", 2,
    "TensorFlow's intra-op thread pool size. It changes the bits of the result; a fixed value "
    "keeps them the same on machines with other core counts. 0 follows the visible cores.")
flags.DEFINE_bool(
    "onednn", True,
    "Use oneDNN's CPU kernels (TF_ENABLE_ONEDNN_OPTS). They change the bits of the result.")
flags.DEFINE_string(
    "onednn_max_cpu_isa", "AVX2",
    "Cap on the instruction set oneDNN may use (ONEDNN_MAX_CPU_ISA), e.g. AVX2, AVX512_CORE, "
    "SSE41; 'native' leaves it to the CPU. oneDNN picks code paths by instruction set, and each "
    "gives other bits: a cap that every target machine has makes the result the same on all.")

_ISA_VALUES = ("native", "SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX512_CORE", "AVX512_CORE_VNNI",
               "AVX512_CORE_BF16", "AVX512_CORE_AMX", "ALL")


@dataclasses.dataclass(frozen=True)
class Settings:
  seed: int = 42
  deterministic: bool = True
  inter_op_threads: int = 2
  intra_op_threads: int = 2
  onednn: bool = True
  onednn_max_cpu_isa: str = "AVX2"

  def __post_init__(self):
    if self.onednn_max_cpu_isa not in _ISA_VALUES:
      raise ValueError("--onednn_max_cpu_isa=%s is not one of %s"
                       % (self.onednn_max_cpu_isa, ", ".join(_ISA_VALUES)))
    for name in ("inter_op_threads", "intra_op_threads"):
      if getattr(self, name) < 0:
        raise ValueError("--%s=%d: use 0 (TensorFlow's choice) or a positive count"
                         % (name, getattr(self, name)))

  def record(self):
    return dataclasses.asdict(self)

  def environment(self):
    """The environment variables these settings need before TensorFlow loads."""
    env = {"TF_ENABLE_ONEDNN_OPTS": "1" if self.onednn else "0",
           "TF_CUDNN_DETERMINISTIC": "1" if self.deterministic else "0"}
    if self.onednn_max_cpu_isa != "native":
      env["ONEDNN_MAX_CPU_ISA"] = self.onednn_max_cpu_isa
    return env


def from_flags():
  return Settings(seed=FLAGS.seed, deterministic=FLAGS.deterministic,
                  inter_op_threads=FLAGS.inter_op_threads,
                  intra_op_threads=FLAGS.intra_op_threads, onednn=FLAGS.onednn,
                  onednn_max_cpu_isa=FLAGS.onednn_max_cpu_isa)


def derive_seed(seed, *purpose):
  """A 31-bit seed for one purpose, e.g. derive_seed(42, "dropout", 3); stable everywhere."""
  h = hashlib.sha256(digest.canonical_json([seed] + list(purpose))).digest()
  return int.from_bytes(h[:4], "big") & 0x7FFFFFFF


def set_environment(settings):
  """Sets the environment switches; fails if TensorFlow already loaded under other ones."""
  env = settings.environment()
  if "tensorflow" in sys.modules:
    current = {k: os.environ.get(k) for k in env}
    if "ONEDNN_MAX_CPU_ISA" not in env and os.environ.get("ONEDNN_MAX_CPU_ISA"):
      current["ONEDNN_MAX_CPU_ISA"] = os.environ["ONEDNN_MAX_CPU_ISA"]
    if any(current.get(k) != v for k, v in env.items()) or len(current) != len(env):
      raise RuntimeError(
          "TensorFlow was imported before the determinism switches were set (%s wanted, %s "
          "in force): call pipeline.determinism.apply() before importing TensorFlow."
          % (env, current))
  os.environ.pop("ONEDNN_MAX_CPU_ISA", None)
  os.environ.update(env)


def apply(settings):
  """Puts the settings in force for this process: environment, TensorFlow, seeds."""
  set_environment(settings)
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import keras  # pylint: disable=g-import-not-at-top
  try:
    tf.config.threading.set_inter_op_parallelism_threads(settings.inter_op_threads)
    tf.config.threading.set_intra_op_parallelism_threads(settings.intra_op_threads)
  except RuntimeError as e:
    if (tf.config.threading.get_inter_op_parallelism_threads() != settings.inter_op_threads or
        tf.config.threading.get_intra_op_parallelism_threads() != settings.intra_op_threads):
      raise RuntimeError("TensorFlow already started with other thread pools: %s" % e) from e
  if settings.deterministic:
    from fwr13y.d9m.tensorflow import enable_determinism  # pylint: disable=g-import-not-at-top
    enable_determinism()
  else:
    tf.config.experimental.disable_op_determinism()
  keras.utils.set_random_seed(derive_seed(settings.seed, "global"))
