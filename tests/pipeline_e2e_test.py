"""End to end through the binaries, as a user runs them: tiny synthetic data, fresh processes."""

import glob
import json
import os
import shutil
import subprocess
import sys

from absl.testing import absltest
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.util import tensor_util

from pipeline import code
from pipeline import determinism
from pipeline import errors
from pipeline import stage
from pipeline import version

from tests.tiny_pipeline import DATA_FLAGS
from tests.tiny_pipeline import PIPELINE
from tests.tiny_pipeline import RUNFILES
from tests.tiny_pipeline import run
from tests.tiny_pipeline import stage_lines
from tests.tiny_pipeline import STAGES
from tests.tiny_pipeline import TINY


class PipelineTest(absltest.TestCase):

  def test_every_stage_then_cache_hits_with_the_same_digests(self):
    store = self.create_tempdir().full_path
    result_json = os.path.join(self.create_tempdir().full_path, "result.json")
    first = run(PIPELINE, TINY + ["--store=" + store, "--result_json=" + result_json])
    self.assertEqual(first.returncode, 0, first.stderr[-3000:])
    stages = stage_lines(first.stdout)
    self.assertEqual([s[0] for s in stages], list(STAGES))
    # The same outcome as a file, for scripts: every stage, and the headline metrics.
    with open(result_json) as f:
      outcome = json.load(f)
    self.assertEqual(outcome["exit"], {"status": 0, "reason": "done", "error": None})
    self.assertEqual([(s["stage"], s["output"], s["key"], s["cache_hit"])
                      for s in outcome["stages"]], stages)
    measured = outcome["stages"][-1]["metrics"]
    self.assertEqual(sorted(measured), ["test_ece", "test_mean_iou", "test_pixel_accuracy"])
    # Katib's format, name=value, on stdout; the epochs' progress on stderr only.
    metrics_line = "\n  metrics: test_ece=%r test_mean_iou=%r test_pixel_accuracy=%r\n" % (
        measured["test_ece"], measured["test_mean_iou"], measured["test_pixel_accuracy"])
    self.assertIn(metrics_line, first.stdout)
    self.assertIn("Epoch 1/2", first.stderr)
    self.assertNotIn("Epoch", first.stdout)
    self.assertNotIn("validation loss", first.stdout)
    self.assertIn("determinism: portable (%s), seed 42, op determinism on"
                  % determinism.PORTABLE_CPU, first.stderr)
    for chatter in ("I0000", "E0000", "cuInit", "oneDNN custom operations"):
      self.assertNotIn(chatter, first.stderr)
    self.assertIn("\n  stage      result        output folder\n", first.stdout)
    self.assertIn("\n  evaluate: test mean IoU ", first.stdout)
    self.assertEqual([l.split()[0] for l in first.stdout.splitlines()
                      if l.startswith(STAGES)], list(STAGES))  # only digest lines
    self.assertIn("\nnext: ./dev bazel run //seg:predict -- --dataset=synthetic", first.stdout)
    self.assertFalse(any(s[3] for s in stages))
    second = run(PIPELINE, TINY + ["--store=" + store])
    self.assertEqual(second.returncode, 0, second.stderr[-3000:])
    again = stage_lines(second.stdout)
    self.assertEqual([s[:3] for s in again], [s[:3] for s in stages])
    self.assertTrue(all(s[3] for s in again), second.stdout)
    self.assertIn(metrics_line, second.stdout)  # a cache hit's: the same line
    outputs = {name: os.path.join(store, "objects", output) for name, output, _, _ in stages}
    lines = first.stdout.splitlines()  # each stage line is followed by its folder
    for name, output in outputs.items():
      after = lines[lines.index(next(l for l in lines if l.startswith(name + " "))) + 1]
      self.assertEqual(after.split(), ["in", output])
    # An output is what its digest says, checkable without reproseg.
    subprocess.run(["sha256sum", "--check", "--quiet",
                    os.path.join("..", stages[3][1] + ".sha256")], cwd=outputs["train"],
                   check=True)
    for stage_name, names in (("train", ("weights.arrays", "fingerprint.json", "history.json",
                                         "metrics.json")),
                              ("calibrate", ("calibration.json", "reliability.png")),
                              ("evaluate", ("metrics.json", "confusion.json", "confusion.png",
                                            "gallery.png"))):
      self.assertEqual(sorted(os.listdir(outputs[stage_name])), sorted(names), stage_name)
    with open(os.path.join(outputs["evaluate"], "metrics.json")) as f:
      measured = json.load(f)
    self.assertEqual(sorted(measured["iou"]), ["background", "border", "pet"])
    self.assertGreater(measured["temperature"], 0)
    self.assertEqual(measured["examples"], 3)  # the tiny test split
    with open(os.path.join(outputs["evaluate"], "gallery.png"), "rb") as f:
      self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
    # TensorBoard's HParams dashboard finds the train run's configuration in its logs.
    logs = b""
    logs_folder = os.path.join(store, "runs", stages[3][2], stage.LOGS_FOLDER)
    for path in glob.glob(os.path.join(logs_folder, "events.*")):
      with open(path, "rb") as f:
        logs += f.read()
    for needed in (b"_hparams_/session_start_info", b"learning_rate", b"dropout_rate",
                   b"seed", stages[3][2].encode()):  # the group: this run's key
      self.assertIn(needed, logs)
    # Evaluate's test metrics are in a folder below it, where HParams finds a run's metrics.
    evaluated = event_accumulator.EventAccumulator(
        os.path.join(logs_folder, "evaluate-test"), size_guidance={event_accumulator.TENSORS: 0})
    evaluated.Reload()
    logged = tensor_util.make_ndarray(evaluated.Tensors("mean_iou")[0].tensor_proto)
    self.assertAlmostEqual(float(logged), measured["mean_iou"], places=6)
    # <store>/tensorboard/ names each run's logs: by stage and key, as no run was named.
    self.assertEqual(os.path.realpath(os.path.join(store, "tensorboard",
                                                   "train-" + stages[3][2][:16])),
                     os.path.realpath(logs_folder))

  def test_a_dry_run_names_cache_hits_and_what_a_changed_flag_would_compute(self):
    store = self.create_tempdir().full_path
    self.assertEqual(run(PIPELINE, TINY + ["--store=" + store]).returncode, 0)
    before = sorted((path, os.lstat(path).st_mtime_ns) for path in
                    glob.glob(os.path.join(store, "**"), recursive=True))
    # In a process where importing TensorFlow or Keras fails: a dry run starts neither.
    without_tensorflow = [sys.executable, "-c", "import runpy, sys\n"
                          "sys.modules['tensorflow'] = sys.modules['keras'] = None\n"
                          "sys.argv = sys.argv[1:]\n"
                          "runpy.run_path(sys.argv[0], run_name='__main__')"]
    result_json = os.path.join(self.create_tempdir().full_path, "result.json")
    stored = run(PIPELINE, TINY + ["--store=" + store, "--dry_run", "--result_json=" + result_json],
                 python=without_tensorflow)
    self.assertEqual(stored.returncode, 0, stored.stderr[-3000:])
    self.assertTrue(all(hit for _, _, _, hit in stage_lines(stored.stdout)), stored.stdout)
    self.assertNotEqual(run(PIPELINE, TINY + ["--store=" + store], python=without_tensorflow)
                        .returncode, 0)  # the control: a run that is not dry needs TensorFlow
    self.assertIn("dry run: 6 cache hits, 0 would compute; nothing was computed or written",
                  stored.stdout)
    with open(result_json) as f:
      self.assertFalse(any(s["would_compute"] for s in json.load(f)["stages"]))
    changed = run(PIPELINE, TINY + ["--store=" + store, "--dry_run", "--learning_rate=0.002",
                                    "--result_json=" + result_json], python=without_tensorflow)
    self.assertEqual(changed.returncode, 0, changed.stderr[-3000:])
    lines = changed.stdout.splitlines()
    self.assertEqual([l.split()[:3] for l in lines if l.startswith(STAGES[3:])],
                     [[name, "would", "compute,"] for name in STAGES[3:]])
    self.assertRegex(changed.stdout, r"\n  train +would compute  params\.learning_rate 0\.001 → "
                                     r"0\.002 since the stored run [0-9a-f]{16}\n")
    self.assertIn("\n  calibrate  would compute  its key is known once train is made (a cache "
                  "hit still, if train makes bits already stored)\n", changed.stdout)
    self.assertNotIn("next:", changed.stdout)
    with open(result_json) as f:
      self.assertEqual([(s["stage"], s["would_compute"]) for s in json.load(f)["stages"]],
                       [(name, name in STAGES[3:]) for name in STAGES])
    # The data binaries plan too; release checks its gate against the stored evaluation, as
    # the run would, and says where the release would go.
    partitioned = run("data_tools/partition", DATA_FLAGS + ["--store=" + store, "--dry_run"],
                      python=without_tensorflow)
    self.assertIn("dry run: 3 cache hits, 0 would compute", partitioned.stdout)
    refused = run("seg/release", TINY + ["--store=" + store, "--dry_run"],
                  python=without_tensorflow)
    self.assertEqual(refused.returncode, errors.CHECK_FAILED, refused.stderr[-3000:])
    self.assertIn("the release gate refused the model", refused.stderr)
    released = run("seg/release", TINY + ["--store=" + store, "--dry_run",
                                          "--min_pixel_accuracy=0"], python=without_tensorflow)
    self.assertEqual(released.returncode, 0, released.stderr[-3000:])
    self.assertIn("\n  would be released as releases/synthetic/1\ndry run: 6 cache hits, 2 would "
                  "compute", released.stdout)
    self.assertEqual(sorted((path, os.lstat(path).st_mtime_ns) for path in
                            glob.glob(os.path.join(store, "**"), recursive=True)), before)
    # A dry run stores nothing to name, and predict is not a stage.
    self.assertIn("drop one of --run_name and --dry_run", run(
        PIPELINE, TINY + ["--store=" + store, "--dry_run", "--run_name=x"]).stderr)
    self.assertIn("--dry_run plans the stage commands", run(
        "seg/predict", TINY + ["--store=" + store, "--dry_run", "--image=x.jpg"]).stderr)

  def test_an_unknown_split_is_one_line_and_stores_nothing(self):
    store = self.create_tempdir().full_path
    result = run(PIPELINE, TINY + ["--store=" + store, "--split=bogus"])
    self.assertEqual(result.returncode, errors.USAGE)
    self.assertIn("--split=bogus", result.stderr)
    self.assertIn("training|validation|calibration|test", result.stderr)
    self.assertNotIn("Traceback", result.stderr)
    self.assertFalse(os.path.exists(os.path.join(store, "keys")) and
                     os.listdir(os.path.join(store, "keys")))

  def test_a_damaged_train_output_stops_evaluate_until_it_is_removed(self):
    store = self.create_tempdir().full_path
    trained = run("seg/train", TINY + ["--store=" + store])
    self.assertEqual(trained.returncode, 0, trained.stderr[-3000:])
    train = dict((s[0], s[1]) for s in stage_lines(trained.stdout))["train"]
    weights = os.path.join(store, "objects", train, "weights.arrays")
    os.chmod(os.path.dirname(weights), 0o755)
    os.chmod(weights, 0o644)
    with open(weights, "r+b") as f:  # one bit of the last byte
      f.seek(-1, os.SEEK_END)
      last = f.read(1)[0]
      f.seek(-1, os.SEEK_END)
      f.write(bytes([last ^ 1]))
    damaged = run(PIPELINE, TINY + ["--store=" + store])
    self.assertEqual(damaged.returncode, errors.DAMAGED, damaged.stderr[-3000:])
    lines = [l for l in damaged.stderr.splitlines() if l.startswith("error:")]
    self.assertLen(lines, 1, damaged.stderr[-3000:])
    for expected in ("stored output " + train, "the calibrate stage (as its input 'train'",
                     "files differ from the listing: weights.arrays",
                     "--remove_damaged %s --store=%s`" % (train, store)):
      self.assertIn(expected, lines[0])
    self.assertNotIn("Traceback", damaged.stderr)
    with open(os.path.join(store, "objects", train + ".sha256")) as f:
      listed = f.read()
    stages = set()
    for name in os.listdir(os.path.join(store, "keys")):
      with open(os.path.join(store, "keys", name)) as f:
        stages.add(json.load(f)["stage"])
    self.assertEqual(stages, {"synthetic", "download", "partition", "train"})  # nothing after
    remove = subprocess.run(
        [sys.executable, os.path.join(RUNFILES, "pipeline", "store_main.py"), "verify",
         "--remove_damaged", train, "--store=" + store], capture_output=True, text=True,
        env=dict(os.environ, PYTHONPATH=RUNFILES), check=False)
    self.assertEqual(remove.returncode, 0, remove.stderr)
    self.assertIn("DAMAGED %s: files differ from the listing: weights.arrays" % train,
                  remove.stdout)
    self.assertIn("removed " + train, remove.stdout)
    again = run(PIPELINE, TINY + ["--store=" + store])
    self.assertEqual(again.returncode, 0, again.stderr[-3000:])
    made = {s[0]: s[1] for s in stage_lines(again.stdout) if not s[3]}
    self.assertEqual(made["train"], train)  # rebuilt with the same bits
    self.assertIn("evaluate", made)
    with open(os.path.join(store, "objects", train + ".sha256")) as f:
      self.assertEqual(f.read(), listed)

  def test_diverged_training_is_one_line_and_stores_no_train_output(self):
    # Adam's first step moves each weight that has a gradient by about the learning rate:
    # after 1e30, step 2's forward pass overflows and its loss is NaN. 1e39 is infinite in
    # float32: step 1's loss is finite, and its update leaves the weights non-finite.
    for rate, extra, where in (
        ("1e30", [], "epoch 1, step 2: the loss is not finite"),
        ("1e39", ["--epochs=1", "--steps_per_epoch=1"],
         "epoch 1, step 1: variable Conv1/kernel is not finite")):
      with self.subTest(rate):
        store = self.create_tempdir().full_path
        result_json = os.path.join(store, "..", os.path.basename(store) + ".json")
        result = run("seg/train", TINY + ["--store=" + store, "--learning_rate=" + rate,
                                          "--result_json=" + result_json] + extra)
        self.assertEqual(result.returncode, 1, result.stderr[-3000:])
        lines = [l for l in result.stderr.splitlines() if l.startswith("error:")]
        self.assertLen(lines, 1, result.stderr[-3000:])
        self.assertIn("training diverged at " + where, lines[0])
        self.assertIn("learning rate %r is too high" % float(rate), lines[0])
        with open(result_json) as f:
          outcome = json.load(f)
        self.assertEqual(outcome["exit"], {"status": 1, "reason": "diverged",
                                           "error": lines[0][len("error: "):]})
        self.assertEqual([s["stage"] for s in outcome["stages"]],
                         ["synthetic", "download", "partition"])  # train stored nothing
        self.assertIn("lower --learning_rate", lines[0])
        self.assertNotIn("Traceback", result.stderr)
        manifests = []
        for name in os.listdir(os.path.join(store, "keys")):
          with open(os.path.join(store, "keys", name)) as f:
            manifests.append(json.load(f))
        self.assertEqual(sorted(m["stage"] for m in manifests),
                         ["download", "partition", "synthetic"])  # no train
        self.assertEqual({n.split(".")[0] for n in os.listdir(os.path.join(store, "objects"))},
                         {m["output"] for m in manifests})
        self.assertEqual(os.listdir(os.path.join(store, "tmp")), [])
        self.assertEqual(glob.glob(os.path.join(store, "runs", "*", "checkpoints", "*")), [])

  def test_store_check_rebuilds_identical_bits_and_catches_a_false_manifest(self):
    store = self.create_tempdir().full_path
    runs = [run("seg/train", TINY + ["--store=" + store, "--seed=%d" % seed]) for seed in (42, 7)]
    for result in runs:
      self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    (_, _, key42, _), (_, out7, _, _) = (stage_lines(r.stdout)[-1] for r in runs)
    check = run("pipeline/store", ["--store=" + store, "check", key42[:12]])
    self.assertEqual(check.returncode, 0, check.stdout + check.stderr[-3000:])
    self.assertIn("IDENTICAL: train " + key42[:16], check.stdout)
    self.assertEqual(os.listdir(os.path.join(store, "tmp")), [])
    # An earlier stage: rebuilt alone, the stages after it are cache hits.
    partition_key = stage_lines(runs[0].stdout)[2][2]
    check = run("pipeline/store", ["--store=" + store, "check", partition_key[:12]])
    self.assertEqual(check.returncode, 0, check.stdout + check.stderr[-3000:])
    self.assertIn("IDENTICAL: partition " + partition_key[:16], check.stdout)
    self.assertRegex(check.stderr, r"\ntrain +output [0-9a-f]{64}  key %s  \(cache hit\)" % key42)
    # Negative control: a manifest that claims the seed-7 bits for the seed-42 key.
    manifest_path = os.path.join(store, "keys", key42 + ".json")
    with open(manifest_path) as f:
      manifest = json.load(f)
    manifest["output"] = out7
    with open(manifest_path, "w") as f:
      json.dump(manifest, f)
    check = run("pipeline/store", ["--store=" + store, "check", key42[:12]])
    self.assertEqual(check.returncode, errors.CHECK_FAILED, check.stdout + check.stderr[-3000:])
    self.assertIn("DIFFERENT: train " + key42[:16], check.stdout)
    self.assertIn("weights.arrays", check.stdout)

  def test_an_edited_build_module_reruns_its_stage_and_the_later_ones(self):
    tree = self.create_tempdir().full_path
    for package in code.PACKAGES:  # the stages' code; kernels/ with its built library
      shutil.copytree(os.path.join(RUNFILES, package), os.path.join(tree, package))
    shutil.copy(os.path.join(RUNFILES, "requirements.lock"), tree)
    store = self.create_tempdir().full_path

    def quickstart():
      result = subprocess.run([sys.executable, "-m", "seg.train_main"] + TINY +
                              ["--store=" + store], capture_output=True, text=True, cwd=tree,
                              env=dict(os.environ, PYTHONPATH=tree), check=False)
      self.assertEqual(result.returncode, 0, result.stderr[-3000:])
      return stage_lines(result.stdout)

    before = quickstart()
    with open(os.path.join(tree, "data_tools", "partition.py"), "a") as f:
      f.write("\n# an edit\n")
    after = quickstart()
    self.assertEqual([(s[0], s[3]) for s in after],
                     [("synthetic", True), ("download", True), ("partition", False),
                      ("train", False)])
    self.assertNotEqual(after[2][2], before[2][2])
    # A comment changes keys, not bits.
    self.assertEqual([s[1] for s in after], [s[1] for s in before])

  def test_tensorflow_startup_lines_only_when_asked(self):
    def partition(*extra):  # in a store of its own: a cache hit would not start TensorFlow
      # oneDNN on: TensorFlow then logs that it is, on any CPU (by default it is on only on
      # CPUs with AVX-512 VNNI and the like: an AVX2 CPU logs nothing of it).
      return run("data_tools/partition",
                 TINY[:4] + ["--store=" + self.create_tempdir().full_path] + list(extra),
                 env={"TF_ENABLE_ONEDNN_OPTS": "1"})

    quiet, shown = partition(), partition("--tensorflow_startup_log")
    for result in (quiet, shown):
      self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    self.assertNotIn("oneDNN custom operations", quiet.stderr)
    self.assertIn("oneDNN custom operations", shown.stderr)  # the control

  def test_partition_alone_shares_the_data_stages(self):
    store = self.create_tempdir().full_path
    data_flags = TINY[:4] + ["--store=" + store]
    part = run("data_tools/partition", data_flags)
    self.assertEqual(part.returncode, 0, part.stderr[-3000:])
    download = run("data_tools/download", data_flags)
    self.assertEqual(download.returncode, 0, download.stderr[-3000:])
    self.assertEqual(stage_lines(download.stdout),
                     [s[:3] + (True,) for s in stage_lines(part.stdout)[:2]])

  def test_offline_download_says_what_to_do_and_leaves_nothing(self):
    store = self.create_tempdir().full_path
    result = run("data_tools/download", ["--mirrors=http://127.0.0.1:1/",
                                         "--store=" + store])
    self.assertEqual(result.returncode, 1)
    self.assertIn("error: could not download images.tar.gz from any mirror", result.stderr)
    self.assertIn("--source=DIR", result.stderr)
    self.assertIn("--dataset=synthetic", result.stderr)
    self.assertNotIn("Traceback", result.stderr)
    self.assertEqual(os.listdir(os.path.join(store, "objects")), [])
    self.assertEqual(os.listdir(os.path.join(store, "keys")), [])

  def test_help_lists_each_binarys_flags_by_group(self):
    data = ("data flags (data_tools.dataset):", "--dataset", "--source", "--image_size")
    determinism = ("determinism flags (pipeline.determinism):", "--seed", "--[no]portable",
                   "--[no]deterministic", "--onednn_max_cpu_isa")
    store = ("store flags (pipeline.cli):", "--store", "--[no]verify_store", "--[no]verify_inputs",
             "--result_json", "output flags (pipeline.tensorflow_startup):",
             "--[no]tensorflow_startup_log")
    training = ("training flags (seg.configs.config_flags):", "--batch_size", "--micro_batches",
                "--epochs", "--learning_rate", "--model_arch", "--hyperparam_fn_path")
    expected = {
        "data_tools/download": data + determinism + store[:5],
        "data_tools/partition": data + determinism + store,
        "seg/train": training + data + determinism + store + (
            "distribution flags (seg.training.distribute):", "--distribute",
            "local workers flags (seg.training.local_workers):", "--workers"),
        "seg/calibrate": training + data + determinism + store,
        "seg/evaluate": ("--split", "--gallery_size") + training + data + determinism + store,
        "seg/export": training + data + determinism + store,
        "seg/predict": ("--image", "--images", "--model", "--output_dir") + training + store,
    }
    for binary, names in expected.items():
      result = run(binary, ["--help"])
      self.assertEqual(result.returncode, 0, binary + result.stderr[-2000:])
      self.assertTrue(result.stdout.startswith(  # the command as a user of a clone runs it
          "./dev bazel run //%s -- " % binary.replace("/", ":")), result.stdout[:200])
      for name in names:
        self.assertIn(name, result.stdout, binary)
      self.assertNotIn("--helpfull:", result.stdout, binary)  # absl's own flags stay out
      for status, words in errors.STATUSES:  # every exit status, as docs/failures.md lists them
        self.assertIn("  %-6s %s" % (status, words.split()[0]), result.stdout, binary)
      if binary != "seg/train":  # only train takes them
        self.assertNotIn("--distribute", result.stdout, binary)
        self.assertNotIn("--workers", result.stdout, binary)

  def test_a_result_file_says_how_a_command_that_does_not_parse_ended(self):
    folder = self.create_tempdir().full_path
    result_json = os.path.join(folder, "result.json")
    with open(result_json, "w") as f:
      f.write('{"exit": {"reason": "done"}}')  # an earlier run's: replaced, never left standing
    result = run("seg/train", ["--result_json=" + result_json, "--epochs=many"])
    self.assertEqual(result.returncode, errors.USAGE, result.stderr[-2000:])
    with open(result_json) as f:
      outcome = json.load(f)
    self.assertEqual((outcome["exit"]["status"], outcome["exit"]["reason"], outcome["stages"]),
                     (errors.USAGE, "usage", []))
    self.assertIn("--epochs", outcome["exit"]["error"])

  def test_version_names_the_release_and_the_code(self):
    result = run("seg/train", ["--version"])
    self.assertEqual(result.returncode, 0, result.stderr[-2000:])
    tree, count = version.code_digest()
    self.assertEqual(result.stdout, "reproseg %s, code %s (%d source files)\n"
                     % (version.VERSION, tree, count))

  def test_helpfull_documents_every_seed_and_switch(self):
    result = run("seg/train", ["--helpfull"])  # absl exits 1 after help
    for flag in ("--seed", "--[no]deterministic", "--[no]portable", "--inter_op_threads",
                 "--intra_op_threads", "--[no]onednn:", "--onednn_max_cpu_isa",
                 "--[no]seeded_dropout", "--[no]augment", "--store", "--dataset",
                 "--hyperparam_fn_path", "--flagfile"):
      self.assertIn(flag, result.stdout, flag)

  def test_bad_flag_values_are_named(self):
    for args, pattern in ((["--dataset=pets"], "dataset"),
                          (["--image_size=100"], "--image_size=100"),
                          (["--source=/nonexistent"], "--source=/nonexistent is not a folder"),
                          (["stray"], "unexpected arguments stray")):
      result = run("data_tools/partition", args + ["--store=" + self.create_tempdir().full_path])
      self.assertNotEqual(result.returncode, 0, args)
      self.assertIn(pattern, result.stderr, args)
      self.assertNotIn("Traceback", result.stderr, args)


if __name__ == "__main__":
  absltest.main()
