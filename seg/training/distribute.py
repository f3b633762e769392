"""Training on several workers: --distribute=multi_worker, tf.distribute's
MultiWorkerMirroredStrategy with the cluster from TF_CONFIG, as Kubeflow's TFJob sets it.

Every worker runs //seg:train with the same flags. Each computes an equal, contiguous share of
every batch's micro-batches (part; seg.training.steps.TrainStep), all-gathers every worker's losses,
gradients and batch moments (the strategy serves only as this collective), and applies the
update one process would: the bits and the train key do not depend on the worker count. The
workers check before training that they computed the same stage key. The chief (TF_CONFIG's
"chief" task, else worker 0) writes the output and manifest to the store; the others train
alongside and write nothing. See docs/determinism.md, "Several workers".

Faults end a worker with one line rather than a hang: a worker that TF_CONFIG names but that
never starts (--cluster_timeout) or a port already taken (wait_for_cluster), SIGINT or SIGTERM
(pipeline.stopping, even while a collective op waits for a peer that is gone), and a peer
that goes away during training (lost_peers_named).
"""

import contextlib
import dataclasses
import errno
import json
import os
import socket
import sys
import threading
import time

from absl import flags

from pipeline import errors
from pipeline import stage
from pipeline import user_input

DEFAULT_CLUSTER_TIMEOUT = 300  # seconds: see --cluster_timeout
_PEER_EXIT_SECONDS = 10  # a peer that aborted our collective may still be ending meanwhile
_DISTRIBUTE = flags.DEFINE_enum(
    "distribute", "none", ["none", "multi_worker"],
    "none: one process. multi_worker: one of several workers (tf.distribute's "
    "MultiWorkerMirroredStrategy), the cluster and this worker's task read from the TF_CONFIG "
    "environment variable; start every worker with the same flags. The worker count must "
    "divide --micro_batches; it does not change the bits, nor the train key. --workers starts "
    "local workers itself.")
_CLUSTER_TIMEOUT = flags.DEFINE_integer(
    "cluster_timeout", DEFAULT_CLUSTER_TIMEOUT,
    "Seconds a worker waits for every worker that TF_CONFIG names to start before it stops "
    "with an error naming those that did not. 300 leaves a scheduler time to place and start "
    "the other workers (an image pull included), and still ends a job whose worker never "
    "comes within minutes instead of never. A worker that goes away later is noticed by "
    "TensorFlow's heartbeats within about 12-15 seconds.", lower_bound=1)


@dataclasses.dataclass(frozen=True)
class Cluster:
  """The workers of a TF_CONFIG (chief first) and this process's place among them; chiefs
  is how many of them are TF_CONFIG's chief task (0 or 1)."""
  workers: tuple
  index: int
  chiefs: int = 0

  @property
  def count(self):
    return len(self.workers)

  @property
  def is_chief(self):
    return self.index == 0

  def describe(self):
    return "worker %d of %d (%s%s)" % (self.index, self.count, self.workers[self.index],
                                       ", the chief" if self.is_chief else "")

  def task(self, index):
    """Worker index's task as TF_CONFIG names it, with its address: "worker:1 (host:port)"."""
    kind, number = ("chief", index) if index < self.chiefs else ("worker", index - self.chiefs)
    return "%s:%d (%s)" % (kind, number, self.workers[index])

  def peers(self):
    """The indices of the other workers."""
    return [index for index in range(self.count) if index != self.index]


def cluster_from_tf_config(text):
  """The Cluster of a TF_CONFIG value: {"cluster": {"chief": [...], "worker": [...]},
  "task": {"type": ..., "index": ...}}; errors name what to fix."""
  tf_config = user_input.loads(text, "TF_CONFIG")
  try:
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
  for address in everyone:
    host_and_port(address)
  place = index if kind == "chief" else len(chiefs) + index
  return Cluster(everyone, place, len(chiefs))


def host_and_port(address):
  """(host, port) of a TF_CONFIG address "host:port" ("[v6 address]:port" too)."""
  host, _, port = address.rpartition(":")
  if not host or not port.isdigit():
    raise errors.Error("TF_CONFIG's address %r is not host:port: give every task's address "
                       "with its port, e.g. \"10.0.0.2:2222\"" % address)
  return host.strip("[]"), int(port)


def cluster_from_flags():
  """The Cluster this process belongs to, or None for --distribute=none."""
  if _DISTRIBUTE.value == "none":
    return None
  if not os.environ.get("TF_CONFIG"):
    raise errors.Error("--distribute=multi_worker needs the cluster in the TF_CONFIG "
                       "environment variable (docs/workers-and-clusters.md)")
  return cluster_from_tf_config(os.environ["TF_CONFIG"])


def from_flags():
  """The Distribution of --distribute (started), or None for --distribute=none."""
  cluster = cluster_from_flags()
  return start(cluster, _CLUSTER_TIMEOUT.value) if cluster else None


def part(micro_batches, cluster):
  """(first, count) of the micro-batches of each batch this worker computes: an equal,
  contiguous share, in worker order."""
  if micro_batches % cluster.count:
    raise errors.Error("--micro_batches=%d does not split evenly across %d workers: use a "
                       "worker count that divides it, or a --micro_batches that %d divides"
                       % (micro_batches, cluster.count, cluster.count))
  count = micro_batches // cluster.count
  return cluster.index * count, count


@dataclasses.dataclass(frozen=True)
class Distribution:
  """This worker's Cluster, and gather: all_gather_function of the strategy across it."""
  cluster: Cluster
  gather: object

  def part(self, micro_batches):
    """(first, count) of the micro-batches of each batch this worker computes: part()."""
    return part(micro_batches, self.cluster)

  def all_gather(self, values):
    """Every worker's values, concatenated along the first axis in worker order: a list of
    tensors [n, ...] of one dtype gives a list of [n * workers, ...], bits unchanged. They
    travel packed, in one all-gather."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    rows = int(values[0].shape[0])
    flat = [tf.reshape(value, [rows, -1]) for value in values]
    gathered = self.gather(tf.concat(flat, axis=1))
    sizes = [int(value.shape[1]) for value in flat]
    return [tf.reshape(piece, [-1] + value.shape[1:].as_list())
            for piece, value in zip(tf.split(gathered, sizes, axis=1), values)]

  def common_epoch(self, epoch):
    """The epoch every worker resumes after: epoch (this worker's newest checkpoint, read
    from the chief's run folder in a shared store), if every worker found the same; else 0,
    from the start (workers on stores of their own, where only the chief's holds
    checkpoints)."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    epochs = set(self.gather(tf.constant([[epoch]], tf.int64)).numpy()[:, 0].tolist())
    if len(epochs) > 1:
      print("distribute: the workers found checkpoints of epochs %s: training from the "
            "start" % ", ".join(map(str, sorted(epochs))), file=sys.stderr, flush=True)
      return 0
    return epoch

  def run_stage(self, store, name, params, inputs, determinism_record, build):
    """pipeline.stage.run on the chief; on the other workers, stage.build_alongside (a
    staging folder, removed: a worker killed meanwhile leaves nothing once the store is
    reopened), and None. The run folder is the chief's, whose checkpoints every worker resumes
    from; only the chief writes there (seg.training.train). Every worker first checks the
    others' key: that of stage.plan, which the chief then executes. Only a repeatable stage can
    run so: the nonce of one that is not would differ from worker to worker."""
    plan = stage.plan(name, params, inputs, determinism_record, build)
    cached = store.lookup(plan.key) is not None
    check_agreement(self.gather, self.cluster, plan.key, cached)
    if self.cluster.is_chief:
      return stage.execute(store, plan)
    note = "the output was in the store"
    if not cached:
      details = stage.build_alongside(store, plan)
      note = "trained alongside, weights digest %s" % details["weights_digest"]
    print("%s: %s, key %s; the chief %s stores the output" % (
        plan.name, self.cluster.describe(), plan.key, self.cluster.workers[0]), file=sys.stderr)
    print("%s: %s" % (plan.name, note), file=sys.stderr, flush=True)
    return None


def start(cluster, timeout=DEFAULT_CLUSTER_TIMEOUT):
  """A Distribution over a Cluster, once every worker has started (see wait_for_cluster).
  Call it before any other TensorFlow op runs: collective ops are configured when TensorFlow
  starts. Only all-gathers run (copies, whatever the implementation); RING is named so that
  no implementation is picked at run time."""
  print("distribute: %s" % cluster.describe(), file=sys.stderr, flush=True)
  wait_for_cluster(cluster, timeout)
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  # tf.distribute logs a line per collective at INFO: keep TensorFlow's warnings only.
  tf.get_logger().setLevel("WARNING")
  options = tf.distribute.experimental.CommunicationOptions(
      implementation=tf.distribute.experimental.CommunicationImplementation.RING)
  return Distribution(cluster, all_gather_function(tf.distribute.MultiWorkerMirroredStrategy(
      communication_options=options)))


def wait_for_cluster(cluster, timeout):
  """Returns once every other worker answers on its TF_CONFIG port, answering on this
  worker's port meanwhile; fails after timeout seconds naming those that never did.

  The strategy's constructor cannot wait so: it starts TensorFlow's gRPC server, then blocks
  in C++ until every worker has registered with the chief's coordination service, without a
  deadline and holding Python's global lock, so that no Python thread (signal handling
  included) runs until it returns. Started after this wait, it returns within seconds.
  """
  listener = listen_on_own_port(cluster)
  answering = threading.Event()
  answerer = threading.Thread(target=_accept_and_close, args=(listener, answering), daemon=True)
  answerer.start()
  try:
    deadline = time.monotonic() + timeout
    missing = absent(cluster)
    if missing:
      print("distribute: waiting up to %ds for %s" % (
          timeout, ", ".join(cluster.task(index) for index in missing)), file=sys.stderr,
          flush=True)
    while missing and time.monotonic() < deadline:
      time.sleep(0.5)
      missing = absent(cluster)
    if missing:
      raise errors.Error(
          "%s did not start within --cluster_timeout=%ds (no answer on %s): start every "
          "worker that TF_CONFIG names, each with the same TF_CONFIG cluster, or raise "
          "--cluster_timeout if they take longer to start"
          % (", ".join(cluster.task(index) for index in missing), timeout,
             "its port" if len(missing) == 1 else "their ports"))
  finally:
    answering.set()
    answerer.join()
    listener.close()


def listen_on_own_port(cluster):
  """A socket listening on this worker's port on every interface, IPv4 and IPv6 where the host
  has both, as TensorFlow's gRPC server binds it; an error naming the port if it cannot (in use
  by another process, most often: TensorFlow would fail later, with a traceback). SO_REUSEADDR,
  as gRPC sets it (socket.create_server does): connections closed in the last minutes
  (TIME_WAIT) do not count."""
  _, port = host_and_port(cluster.workers[cluster.index])
  dual = socket.has_dualstack_ipv6()
  try:
    return socket.create_server(("", port), family=socket.AF_INET6 if dual else socket.AF_INET,
                                dualstack_ipv6=dual)
  except OSError as e:
    why = ("is in use by another process (%s): stop that process (`ss -ltnp 'sport = :%d'` "
           "names it; an earlier worker that still runs?)" % (e.strerror, port)
           if e.errno == errno.EADDRINUSE else "cannot be listened on (%s):" % e.strerror)
    raise errors.Error("port %d of this worker, TF_CONFIG's %s, %s or give this worker a free "
                       "port in TF_CONFIG" % (port, cluster.task(cluster.index), why)) from e


def _accept_and_close(listener, done):
  """Accepts and closes connections on listener until done is set. A peer's TensorFlow that
  connects meanwhile sees its connection closed, and retries."""
  listener.settimeout(0.2)
  while not done.is_set():
    try:
      connection, _ = listener.accept()
    except socket.timeout:
      continue
    connection.close()


def absent(cluster):
  """The indices of the other workers that do not answer on their port."""
  return [index for index in cluster.peers() if not _is_listening(cluster.workers[index])]


def _is_listening(address, timeout=2):
  """Whether something accepts a TCP connection at a TF_CONFIG address."""
  try:
    with socket.create_connection(host_and_port(address), timeout=timeout):
      return True
  except OSError:
    return False


@contextlib.contextmanager
def lost_peers_named(cluster):
  """Turns TensorFlow's error at a collective op whose peer went away ("Collective ops is
  aborted by: ...", raised once the chief's coordination service misses the peer's
  heartbeats, or at once when the chief's connection closes) into one errors.Error naming
  the workers whose port no longer answers, waiting up to _PEER_EXIT_SECONDS for one to
  close (a peer that stops closes its connections before its port). Other errors pass
  unchanged."""
  try:
    yield
  except Exception as e:
    # An OpError can only come from a TensorFlow already imported; import none before it is.
    tf = sys.modules.get("tensorflow")
    if tf is None or not isinstance(e, tf.errors.OpError):
      raise
    gone = absent(cluster)
    deadline = time.monotonic() + _PEER_EXIT_SECONDS
    while not gone and time.monotonic() < deadline:  # a stopping peer closes its port last
      time.sleep(0.5)
      gone = absent(cluster)
    if not gone:
      raise
    raise errors.Error(
        "%s went away during training: %s, and TensorFlow aborted the collective ops of this "
        "worker, %s. The log of %s tells why; start every worker again to train"
        % (", ".join(cluster.task(index) for index in gone),
           "it no longer answers on its port" if len(gone) == 1 else
           "they no longer answer on their ports", cluster.task(cluster.index),
           "that worker" if len(gone) == 1 else "each")) from e


def all_gather_function(strategy):
  """A tf.function of a tensor [n, ...] returning every worker's, concatenated in worker order:
  [n * workers, ...], bits unchanged (a copy). The tensor is placed on this worker's device
  first: without a device, the strategy's all-gather fails in a tf.function ("destinations can
  not be empty", TF 2.21), and run eagerly each call costs about 0.1 s more."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  device = strategy.extended.worker_devices[0]

  def gather(tensor):
    with tf.device(device):
      tensor = tf.identity(tensor)
    return tf.distribute.get_replica_context().all_gather(tensor, axis=0)

  @tf.function
  def all_gather(tensor):
    return strategy.run(gather, args=(tensor,))

  return lambda tensor: strategy.experimental_local_results(all_gather(tensor))[0]


def check_agreement(gather, cluster, key, cached):
  """Fails unless every worker computed this stage key and sees the same cache state.
  gather: all_gather_function's."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  mine = [int(key[i:i + 8], 16) for i in range(0, len(key), 8)] + [int(cached)]
  rows = gather(tf.constant([mine], tf.int64)).numpy().tolist()
  for index, row in enumerate(rows):
    if row[:-1] != mine[:-1]:
      theirs = "".join("%08x" % part for part in row[:-1])
      raise errors.Error(
          "worker %d's train key %s… differs from this worker's (%d) %s…: start every worker "
          "with the same flags, code and TensorFlow, on the same partition output (with "
          "--noportable, the key holds the machine too: keep portable mode across machines)"
          % (index, theirs[:16], cluster.index, key[:16]))
    if row[-1] != mine[-1]:
      raise errors.Error("worker %d %s the train output in the store and this worker (%d) "
                         "%s: every worker must see the same store"
                         % (index, "finds" if row[-1] else "does not find", cluster.index,
                            "does" if cached else "does not"))
