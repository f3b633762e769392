"""Training on several workers: --distribute=multi_worker, tf.distribute's
MultiWorkerMirroredStrategy with the cluster from TF_CONFIG, as Kubeflow's TFJob sets it.

Every worker runs //seg:train with the same flags. Each takes its slice of every global batch
(seg.input_pipeline), the update step is the single-process one under the strategy, gradients
and batch statistics are summed across workers by all-reduce, and the workers check before
training that they computed the same stage key. The chief (TF_CONFIG's "chief" task, else
worker 0) writes the output and manifest to the store; the others train alongside and write
nothing. See docs/determinism.md, "Several workers".
"""

import dataclasses
import json
import os
import tempfile

from absl import flags

from pipeline import digest
from pipeline import errors
from pipeline import stage

_DISTRIBUTE = flags.DEFINE_enum(
    "distribute", "none", ["none", "multi_worker"],
    "none: one process. multi_worker: one of several workers (tf.distribute's "
    "MultiWorkerMirroredStrategy), the cluster and this worker's task read from the TF_CONFIG "
    "environment variable; start every worker with the same flags. The worker count enters "
    "the train key.")


@dataclasses.dataclass(frozen=True)
class Cluster:
  """The workers of a TF_CONFIG (chief first) and this process's place among them."""
  workers: tuple
  index: int

  @property
  def count(self):
    return len(self.workers)

  @property
  def is_chief(self):
    return self.index == 0

  def describe(self):
    return "worker %d of %d (%s%s)" % (self.index, self.count, self.workers[self.index],
                                       ", the chief" if self.is_chief else "")


def cluster_from_tf_config(text):
  """The Cluster of a TF_CONFIG value: {"cluster": {"chief": [...], "worker": [...]},
  "task": {"type": ..., "index": ...}}; errors name what to fix."""
  try:
    tf_config = json.loads(text)
    cluster, task = tf_config["cluster"], tf_config["task"]
    kind, index = task["type"], int(task["index"])
  except (ValueError, KeyError, TypeError) as e:
    raise errors.Error("TF_CONFIG is not a cluster and a task (%s): it must look like "
                       '{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", '
                       '"index": 0}}' % e) from e
  unknown = sorted(set(cluster) - {"chief", "worker"})
  if unknown:
    raise errors.Error("TF_CONFIG names %s tasks: --distribute=multi_worker takes only "
                       "chief and worker tasks (parameter servers do not train "
                       "reproducibly)" % ", ".join(unknown))
  chiefs, workers = list(cluster.get("chief", [])), list(cluster.get("worker", []))
  if len(chiefs) > 1:
    raise errors.Error("TF_CONFIG names %d chiefs; at most one" % len(chiefs))
  everyone = tuple(chiefs + workers)
  if kind not in ("chief", "worker") or not 0 <= index < len(cluster.get(kind, [])):
    raise errors.Error("TF_CONFIG's task %s:%d is not in its cluster %s"
                       % (kind, index, json.dumps(cluster)))
  place = index if kind == "chief" else len(chiefs) + index
  return Cluster(everyone, place)


def cluster_from_flags():
  """The Cluster this process belongs to, or None for --distribute=none."""
  if _DISTRIBUTE.value == "none":
    return None
  if not os.environ.get("TF_CONFIG"):
    raise errors.Error("--distribute=multi_worker needs the cluster in the TF_CONFIG "
                       "environment variable (README.md, \"Several workers\")")
  return cluster_from_tf_config(os.environ["TF_CONFIG"])


def from_flags():
  """The Distribution of --distribute (started), or None for --distribute=none."""
  cluster = cluster_from_flags()
  return start(cluster) if cluster else None


def shard(batch_size, cluster):
  """(start, stop) of this worker's rows in each global batch of batch_size."""
  if batch_size % cluster.count:
    raise errors.Error("--batch_size=%d does not split evenly across %d workers: use a "
                       "multiple of %d" % (batch_size, cluster.count, cluster.count))
  size = batch_size // cluster.count
  return cluster.index * size, (cluster.index + 1) * size


@dataclasses.dataclass(frozen=True)
class Distribution:
  """This worker's Cluster and the strategy that trains across it."""
  cluster: Cluster
  strategy: object

  def record(self):
    """What enters the train key: the strategy and the worker count."""
    return {"strategy": "multi_worker", "workers": self.cluster.count}

  def run_stage(self, store, name, params, inputs, determinism_record, build):
    """pipeline.stage.run on the chief; on the other workers, build into a scratch folder
    that is then deleted, and None. Every worker first checks the others' key."""
    key = digest.record_digest(stage.key_record(name, build, params, inputs,
                                                determinism_record))
    cached = store.lookup(key) is not None
    check_agreement(self.strategy, self.cluster, key, cached)
    if self.cluster.is_chief:
      return stage.run(store, name, params, inputs, determinism_record, build)
    note = "the output was in the store"
    if not cached:
      with tempfile.TemporaryDirectory(prefix="reproseg-worker-") as scratch:
        out, run_dir = os.path.join(scratch, "out"), os.path.join(scratch, "run")
        os.makedirs(out)
        details = build(out, run_dir)
      note = "trained alongside, weights digest %s" % details["weights_digest"]
    print("%s: %s, key %s; the chief %s stores the output" % (
        name, self.cluster.describe(), key, self.cluster.workers[0]))
    print("%s: %s" % (name, note), flush=True)
    return None


def start(cluster):
  """A Distribution over a Cluster. Call it before any other TensorFlow op runs: collective
  ops are configured when TensorFlow starts. RING all-reduce sums in a fixed order."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  # tf.distribute logs a line per all-reduce batch at INFO: keep TensorFlow's warnings only.
  tf.get_logger().setLevel("WARNING")
  options = tf.distribute.experimental.CommunicationOptions(
      implementation=tf.distribute.experimental.CommunicationImplementation.RING)
  print("distribute: %s" % cluster.describe(), flush=True)
  return Distribution(cluster, tf.distribute.MultiWorkerMirroredStrategy(
      communication_options=options))


def check_agreement(strategy, cluster, key, cached):
  """Fails unless every worker computed this stage key and sees the same cache state."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  mine = [int(key[i:i + 8], 16) for i in range(0, len(key), 8)] + [int(cached)]
  # One eager all-gather: TensorFlow's warning that eager collectives are slow is moot here.
  logger = tf.get_logger()
  level = logger.level
  logger.setLevel("ERROR")
  try:
    gathered = strategy.run(
        lambda v: tf.distribute.get_replica_context().all_gather(v, axis=0),
        args=(tf.constant([mine], tf.int64),))
  finally:
    logger.setLevel(level)
  rows = strategy.experimental_local_results(gathered)[0].numpy().tolist()
  for index, row in enumerate(rows):
    if row[:-1] != mine[:-1]:
      theirs = "".join("%08x" % part for part in row[:-1])
      raise errors.Error(
          "worker %d's train key %s… differs from this worker's (%d) %s…: start every worker "
          "with the same flags, code and TensorFlow, on the same partition output"
          % (index, theirs[:16], cluster.index, key[:16]))
    if row[-1] != mine[-1]:
      raise errors.Error("worker %d %s the train output in the store and this worker (%d) "
                         "%s: every worker must see the same store"
                         % (index, "finds" if row[-1] else "does not find", cluster.index,
                            "does" if cached else "does not"))
