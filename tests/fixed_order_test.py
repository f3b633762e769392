"""The fixed-order kernels (kernels/fixed_order.py): the same bits on every kernel path
(AVX-512, AVX2, the scalar reference), every intra-op pool size and emulated CPUs of both
vendors' cache geometries (tests/golden/fixed_order.json), within a stated tolerance of
TensorFlow's own ops, with gradients that agree with TensorFlow's.

Cases are the decoder's shapes, an input smaller than the filter, data near FLT_MIN (flushed
denormals), and random shapes from a fixed seed: odd sizes, kernels 1 to 4, strides 1 and 2,
SAME and VALID padding, channel counts that are no multiple of 8 or 16, and counts above 64
(the AVX-512 register block). The negative control: TensorFlow's own weight gradient (oneDNN)
gives other bits for other pool sizes, which the same digest comparison sees.

A change of the golden digests is a change of the kernels' bits, a reproducibility break:
  ./dev bazel run //tests:fixed_order_test -- --write_golden
and say why in CHANGELOG.md.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys

from absl.testing import absltest
import numpy as np

os.environ["TF_ENABLE_ONEDNN_OPTS"] = "1"  # the negative control's oneDNN, on any CPU
import tensorflow as tf  # pylint: disable=g-import-not-at-top,wrong-import-position

from kernels import fixed_order  # pylint: disable=g-import-not-at-top,wrong-import-position
from pipeline import errors  # pylint: disable=g-import-not-at-top,wrong-import-position
from seg.model import exact_layers  # pylint: disable=g-import-not-at-top,wrong-import-position

POOLS = (1, 2, 3, 4, 7)
EMULATED_CPUS = ("Haswell-v4", "EPYC-Rome-v1")  # Intel's and AMD's cache geometry, AVX2
GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden", "fixed_order.json")
# Largest |fixed-order - TensorFlow| / max |TensorFlow| allowed: float32 sums of at most a few
# thousand terms in another order (measured: at most 6e-7 on these cases).
TOLERANCE = 1e-5


def _cases():
  """(name, batch, height, width, in channels, out channels, kernel, stride, padding)."""
  rng = np.random.default_rng(2026)
  cases = [("unet_up", 2, 8, 8, 96, 64, 3, 2, "SAME"),  # the decoder's stride-2 shape
           ("pointwise", 3, 9, 7, 17, 70, 1, 1, "SAME"),
           ("logits", 2, 6, 6, 35, 3, 3, 2, "SAME"),
           ("small_input", 1, 2, 3, 5, 20, 3, 2, "SAME"),  # padding on both sides of a tap
           ("denormal", 2, 5, 5, 9, 17, 3, 1, "SAME")]  # inputs near FLT_MIN: flushed
  for i in range(9):
    k = int(rng.integers(1, 5))
    h, w = (int(v) for v in rng.integers(k, 14, size=2))
    cases.append(("random%d" % i, int(rng.integers(1, 4)), h, w, int(rng.integers(1, 40)),
                  int(rng.integers(1, 90)), k, int(rng.integers(1, 3)),
                  ("SAME", "VALID")[int(rng.integers(0, 2))]))
  return cases


CASES = _cases()


def _inputs(case):
  _, n, h, w, ci, co, k, stride, padding = case
  rng = np.random.default_rng(sum(map(ord, case[0])))  # the case's own inputs
  normal = lambda *shape: tf.constant(rng.standard_normal(shape).astype(np.float32))
  # Data near FLT_MIN (1.2e-38): some inputs, products and sums are denormal, which every
  # path flushes to zero, as TensorFlow does.
  data = ((lambda *shape: tf.constant((1e-38 * rng.standard_normal(shape)).astype(np.float32)))
          if case[0] == "denormal" else normal)
  _, (oh, ow) = fixed_order.window((h, w), (k, k), (stride, stride), padding)
  return {"x": data(n, h, w, ci), "w": normal(k, k, ci, co), "t_x": data(n, oh, ow, co),
          "t_w": normal(k, k, ci, co), "d_x": data(n, h, w, co), "d_w": normal(k, k, co, 1),
          "hw": (h, w), "stride": stride, "padding": padding}


def _with_gradients(function, *inputs):
  """[output, gradient of sum(output²) for each input] as NumPy arrays."""
  with tf.GradientTape() as tape:
    tape.watch(inputs)
    output = function(*inputs)
    loss = tf.reduce_sum(output * output)
  return [output.numpy()] + [g.numpy() for g in tape.gradient(loss, list(inputs))]


def fixed_order_results(case):
  """{op: [output, input gradient, filter gradient]} of the fixed-order ops on a case."""
  v = _inputs(case)
  s, p = v["stride"], v["padding"]
  return {
      "conv2d": _with_gradients(lambda x, w: fixed_order.conv2d(x, w, s, p), v["x"], v["w"]),
      "conv2d_transpose": _with_gradients(
          lambda x, w: fixed_order.conv2d_transpose(x, w, v["hw"], s, p), v["t_x"], v["t_w"]),
      "depthwise_conv2d": _with_gradients(
          lambda x, w: fixed_order.depthwise_conv2d(x, w, s, p), v["d_x"], v["d_w"]),
  }


def tensorflow_results(case):
  """The same as fixed_order_results, from TensorFlow's own ops."""
  v = _inputs(case)
  s, p = v["stride"], v["padding"]
  n, (h, w), ci = case[1], v["hw"], case[4]
  return {
      "conv2d": _with_gradients(lambda x, w: tf.nn.conv2d(x, w, s, p), v["x"], v["w"]),
      "conv2d_transpose": _with_gradients(
          lambda x, f: tf.nn.conv2d_transpose(x, f, (n, h, w, ci), s, p), v["t_x"], v["t_w"]),
      "depthwise_conv2d": _with_gradients(
          lambda x, w: tf.nn.depthwise_conv2d(x, w, (1, s, s, 1), p), v["d_x"], v["d_w"]),
  }


def digest(results):
  return hashlib.sha256(b"".join(a.tobytes() for a in results)).hexdigest()


def _stock_weight_gradient_digest():
  """TensorFlow's Conv2DBackpropFilter (oneDNN) on a 1x1 convolution: the negative control."""
  rng = np.random.default_rng(1)
  x = tf.constant(rng.standard_normal((8, 32, 32, 24)).astype(np.float32))
  dy = tf.constant(rng.standard_normal((8, 32, 32, 40)).astype(np.float32))
  return digest([tf.raw_ops.Conv2DBackpropFilter(
      input=x, filter_sizes=[1, 1, 24, 40], out_backprop=dy, strides=[1, 1, 1, 1],
      padding="SAME").numpy()])


def case_digests():
  """{case: {op: digest of output and both gradients}} on the path in force."""
  return {c[0]: {op: digest(r) for op, r in fixed_order_results(c).items()} for c in CASES}


def child_digests():
  """case_digests() on the widest path, and the stock control: printed as JSON by a child
  process with its own pool size."""
  return {"fixed_order": case_digests(), "stock": _stock_weight_gradient_digest(),
          "path": fixed_order.current_path()}


def run_child(pool, prefix=()):
  """child_digests() of a child process with this pool size, run behind prefix (an
  emulator)."""
  output = subprocess.run(
      list(prefix) + [sys.executable, os.path.abspath(__file__), "--child_pool=%d" % pool],
      capture_output=True, text=True, check=True, timeout=900,
      env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
  return json.loads(output.stdout.strip().splitlines()[-1])


def load_golden():
  with open(GOLDEN) as f:
    return json.load(f)


def _paths():
  """The kernel paths this CPU can run."""
  paths = []
  for name in ("scalar", "avx2", "avx512"):
    try:
      fixed_order.force_path(name)
      paths.append(name)
    except ValueError:
      pass
  fixed_order.force_path("auto")
  return paths


class FixedOrderTest(absltest.TestCase):

  def test_every_path_gives_the_scalar_references_bits(self):
    paths = _paths()
    self.assertIn("scalar", paths)
    self.assertIn("avx2", paths)  # every CPU that portable mode accepts has AVX2 and FMA
    for case in CASES:
      fixed_order.force_path("scalar")
      reference = fixed_order_results(case)
      for path in paths[1:]:
        fixed_order.force_path(path)
        for op, results in fixed_order_results(case).items():
          with self.subTest(case=case, op=op, path=path):
            for name, got, want in zip(("output", "input grad", "filter grad"), results,
                                       reference[op]):
              self.assertTrue(np.array_equal(got, want), "%s differs" % name)
    fixed_order.force_path("auto")

  def test_within_tolerance_of_tensorflow_and_its_gradients(self):
    for case in CASES:
      ours, theirs = fixed_order_results(case), tensorflow_results(case)
      for op in ours:
        for name, got, want in zip(("output", "input grad", "filter grad"), ours[op],
                                   theirs[op]):
          with self.subTest(case=case, op=op, what=name):
            self.assertEqual(got.shape, want.shape)
            scale = max(float(np.max(np.abs(want))), 1e-30)
            self.assertLessEqual(float(np.max(np.abs(got - want))) / scale, TOLERANCE)

  def test_numeric_gradient(self):
    # Against finite differences, not only against TensorFlow's gradient ops.
    x = tf.constant(np.random.default_rng(3).standard_normal((1, 5, 4, 3)), tf.float32)
    w = tf.constant(np.random.default_rng(4).standard_normal((3, 3, 3, 2)), tf.float32)
    for function in (lambda x, w: fixed_order.conv2d(x, w, 2, "SAME"),
                     lambda x, w: fixed_order.conv2d_transpose(
                         tf.reshape(x[..., :2], (1, 5, 4, 2)), w, (10, 8), 2, "SAME")):
      theoretical, numerical = tf.test.compute_gradient(function, [x, w], delta=1e-2)
      for t, n in zip(theoretical, numerical):
        np.testing.assert_allclose(t, n, atol=2e-2)

  def test_the_golden_digests(self):
    golden = load_golden()
    self.assertEqual(golden["cases"], [list(c) for c in CASES])
    self.assertEqual(case_digests(), golden["digests"])

  def test_every_pool_size_gives_the_golden_bits(self):
    runs = {pool: run_child(pool) for pool in POOLS}
    for pool, run in runs.items():
      with self.subTest(pool=pool):
        self.assertEqual(run["path"], fixed_order.current_path())
        self.assertEqual(run["fixed_order"], load_golden()["digests"])
    # Negative control: the comparison sees TensorFlow's own kernel follow the pool size.
    self.assertGreater(len({run["stock"] for run in runs.values()}), 1)

  def test_emulated_cpus_give_the_golden_bits(self):
    # qemu-x86_64 (./dev installs it) emulates AVX2 and FMA, no AVX-512, and reports Intel's
    # or AMD's cache sizes by model: the AVX2 path under both geometries.
    for cpu in EMULATED_CPUS:
      with self.subTest(cpu=cpu):
        run = run_child(4, prefix=("qemu-x86_64", "-cpu", cpu))
        self.assertEqual(run["path"], "avx2")
        self.assertEqual(run["fixed_order"], load_golden()["digests"])

  def test_refusals_name_the_input(self):
    x = tf.zeros((1, 4, 4, 2))
    with self.assertRaisesRegex(ValueError, "channel multiplier 2"):
      fixed_order.depthwise_conv2d(x, tf.zeros((3, 3, 2, 2)), 1, "SAME")
    with self.assertRaisesRegex(ValueError, "does not fit a 4-pixel input"):
      fixed_order.conv2d(x, tf.zeros((5, 5, 2, 1)), 1, "VALID")
    with self.assertRaisesRegex(ValueError, "padding 'FULL'"):
      fixed_order.conv2d(x, tf.zeros((3, 3, 2, 1)), 1, "FULL")
    with self.assertRaisesRegex(ValueError, "takes \\[2, 2\\] inputs, not \\[4, 4\\]"):
      fixed_order.conv2d_transpose(x, tf.zeros((3, 3, 1, 2)), (4, 4), 2, "SAME")
    with self.assertRaisesRegex(ValueError, "'neon' is not one of"):
      fixed_order.force_path("neon")
    with self.assertRaisesRegex(ValueError, "dw: the fixed-order kernels take depth_multiplier"):
      exact_layers.FixedOrderDepthwiseConv2D(3, depth_multiplier=2, name="dw")(x)
    with self.assertRaisesRegex(tf.errors.InvalidArgumentError, "filter has 3 input channels"):
      fixed_order.conv2d(x, tf.zeros((3, 3, 3, 1)), 1, "SAME")

  def test_a_library_not_built_is_refused_in_one_line(self):
    # The kernels' sources in a tree of their own, as a run from a source tree without
    # `bazel build` has them: no library beside them, then a stale bazel-bin copy, then a
    # fresh one.
    root = self.create_tempdir().full_path
    folder = os.path.dirname(os.path.abspath(fixed_order.__file__))
    os.mkdir(os.path.join(root, "kernels"))
    for name in os.listdir(folder):
      if name.endswith((".py", ".cc", ".h", ".bzl")):
        shutil.copy(os.path.join(folder, name), os.path.join(root, "kernels"))
    not_built = "refused: the fixed-order kernels' library is not built: run reproseg through"
    self.assertTrue(_import_in(root).startswith(not_built))
    # Building a fixed-order U-Net loads the kernels first: the same line, not Keras' text
    # around it (which a layer's call would give).
    built_unet = "from seg.model import unet\nunet._layer_classes(True, True, False)"
    self.assertTrue(_import_in(root, built_unet).startswith(not_built))
    stale = os.path.join(root, "bazel-bin", "kernels", os.path.basename(fixed_order.LIBRARY))
    os.makedirs(os.path.dirname(stale))
    shutil.copy(fixed_order.LIBRARY, stale)
    os.utime(stale, (0, 0))
    self.assertTrue(_import_in(root).startswith("refused: %s is older than the kernels' "
                                                "sources: rebuild it" % stale))
    os.utime(stale)  # now newer than the sources: taken
    self.assertEqual(_import_in(root), "loaded\n")
    # Negative control: the same child loads this test's library.
    self.assertEqual(_import_in(os.path.dirname(folder)), "loaded\n")


def _import_in(root, statements="from kernels import fixed_order"):
  """What a child prints that runs statements with root first on its path (reproseg's
  packages after it): "loaded", or "refused: " and an errors.Error's message."""
  workspace = os.path.dirname(os.path.dirname(os.path.abspath(errors.__file__)))
  code = ("import sys\nsys.path[:0] = [%r, %r]\nfrom pipeline import errors\ntry:\n"
          "  %s\n  print('loaded')\nexcept errors.Error as e:\n  print('refused:', e)\n"
          % (root, workspace, statements.replace("\n", "\n  ")))
  return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                        check=True).stdout


def _child(pool):
  tf.config.threading.set_intra_op_parallelism_threads(pool)
  print(json.dumps(child_digests()))


def _write_golden():
  """Writes GOLDEN into the workspace from this CPU's widest path (`bazel run` only)."""
  from pipeline import determinism  # pylint: disable=g-import-not-at-top
  workspace = os.environ.get("BUILD_WORKSPACE_DIRECTORY")
  if not workspace:
    sys.exit("run me with: ./dev bazel run //tests:fixed_order_test -- --write_golden")
  path = os.path.join(workspace, "tests", "golden", os.path.basename(GOLDEN))
  with open(path, "w") as f:
    json.dump({"written_on": "%s, %s path" % (determinism.cpu_model(),
                                              fixed_order.current_path()),
               "cases": [list(c) for c in CASES], "digests": case_digests()},
              f, indent=2, sort_keys=True)
    f.write("\n")
  print("wrote", path)


if __name__ == "__main__":
  if len(sys.argv) == 2 and sys.argv[1].startswith("--child_pool="):
    _child(int(sys.argv[1].split("=")[1]))
  elif sys.argv[1:] == ["--write_golden"]:
    _write_golden()
  else:
    absltest.main()
