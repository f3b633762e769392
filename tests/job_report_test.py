"""benchmarks/job_report.py, what benchmarks/full_size.py checks and reports: the check that a
step computed its own stages only, the table's totals and ratios, the metrics of two modes, the
JSON record and the ETA's arithmetic. No TensorFlow, no processes."""

import json

from absl.testing import absltest

from benchmarks import job_report
from pipeline import errors

GB = 10**9


def _stage(name, cache_hit, **metrics):
  return {"stage": name, "key": name * 4, "output": "0" * 64, "path": "/s/" + name,
          "cache_hit": cache_hit, "metrics": metrics, "would_compute": False}


def _measured(step, wall, cpu=1.0, rss=GB, stages=()):
  return job_report.Measured(step, ("python", "-m", step), wall, cpu * 0.75, cpu * 0.25, rss,
                             tuple(stages))


TRAIN, CALIBRATE, EVALUATE = job_report.MODEL_STEPS
DOWNLOAD, PARTITION = job_report.DATA_STEPS


def _mode(train_wall, iou):
  """A mode's three model steps: train, calibrate, evaluate (whose stages carry metrics)."""
  return [_measured("train", train_wall, cpu=2 * train_wall, rss=3 * GB,
                    stages=[_stage("partition", True), _stage("train", False)]),
          _measured("calibrate", 10.0, rss=2 * GB,
                    stages=[_stage("train", True), _stage("calibrate", False)]),
          _measured("evaluate", 20.0, rss=2 * GB,
                    stages=[_stage("train", True, validation_iou=0.7),
                            _stage("evaluate", False, test_mean_iou=iou)])]


DATA = [_measured("download", 100.0, rss=GB // 2,
                  stages=[_stage("synthetic", False), _stage("download", False)]),
        _measured("partition", 50.0, rss=GB, stages=[_stage("download", True),
                                                     _stage("partition", False)])]


class CheckComputedTest(absltest.TestCase):

  def test_a_step_that_computed_its_own_stages_passes(self):
    job_report.check_computed(DOWNLOAD, DATA[0], "/store")
    job_report.check_computed(TRAIN, _mode(60.0, 0.5)[0], "/store")

  def test_a_data_step_may_find_its_stages_stored(self):
    stored = _measured("partition", 2.0, stages=[_stage("download", True),
                                                 _stage("partition", True)])
    job_report.check_computed(PARTITION, stored, "/store")
    self.assertTrue(job_report.taken_from_store(stored))
    self.assertFalse(job_report.taken_from_store(DATA[1]))

  def test_a_model_step_that_was_a_cache_hit_fails(self):
    hit = _measured("train", 2.0, stages=[_stage("partition", True), _stage("train", True)])
    with self.assertRaisesRegex(errors.Error, r"train step .* computed \[\] in the store "
                                r"/mode, where it must compute exactly \[train\]: "):
      job_report.check_computed(TRAIN, hit, "/mode")

  def test_a_step_that_computed_an_upstream_stage_too_fails(self):
    both = _measured("train", 2.0, stages=[_stage("partition", False), _stage("train", False)])
    with self.assertRaisesRegex(errors.Error,
                                r"computed \[partition, train\].* a stage flag after --"):
      job_report.check_computed(TRAIN, both, "/mode")

  def test_a_data_step_that_computed_part_of_its_stages_fails(self):
    part = _measured("download", 2.0, stages=[_stage("synthetic", True),
                                              _stage("download", False)])
    with self.assertRaisesRegex(errors.Error, r"computed \[download\] in the store /data, "
                                r"where it must compute exactly \[synthetic, download\] or "
                                r"nothing: .* another --data_store"):
      job_report.check_computed(DOWNLOAD, part, "/data")


class TableTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.modes = {"portable": _mode(120.0, 0.75), "nondeterministic": _mode(100.0, 0.76)}

  def test_totals_sum_times_and_take_the_largest_rss(self):
    rows = job_report.rows(DATA, self.modes)
    self.assertEqual(list(rows), ["download", "partition", "train", "calibrate", "evaluate",
                                  "model stages", "whole job"])
    self.assertEqual(rows["model stages"]["portable"],
                     {"wall_seconds": 150.0, "cpu_seconds": 242.0, "peak_rss_bytes": 3 * GB})
    self.assertEqual(rows["whole job"]["nondeterministic"],
                     {"wall_seconds": 280.0, "cpu_seconds": 204.0, "peak_rss_bytes": 3 * GB})
    self.assertEqual(rows["download"]["portable"], rows["download"]["nondeterministic"])

  def test_ratios_are_portable_over_nondeterministic_wall_time(self):
    ratios = job_report.wall_ratios(job_report.rows(DATA, self.modes))
    self.assertAlmostEqual(ratios["train"], 1.2)
    self.assertAlmostEqual(ratios["model stages"], 150 / 130)
    self.assertAlmostEqual(ratios["whole job"], 300 / 280)
    self.assertAlmostEqual(ratios["download"], 1.0)

  def test_one_mode_has_no_ratio(self):
    ratios = job_report.wall_ratios(job_report.rows(DATA, {"portable": _mode(120.0, 0.75)}))
    self.assertEqual(set(ratios.values()), {None})

  def test_the_table_shows_each_row_and_marks_the_shared_data_steps(self):
    lines = job_report.table(DATA, self.modes)
    self.assertEqual(len(lines), 9)
    self.assertRegex(lines[0], r"^ +wall +CPU \(user\+sys\) +peak RSS$")
    self.assertRegex(lines[1], r"^stage +portable +nondeterministic +ratio +portable +"
                     r"nondeterministic +portable +nondeterministic$")
    self.assertRegex(lines[2], r"^synthetic, download\* +1m40s +1m40s +shared +1.0s +1.0s +"
                     r"0.50 GB +0.50 GB$")
    self.assertRegex(lines[4], r"^train +2m00s +1m40s +1.20x +4m00s +3m20s +3.00 GB +3.00 GB$")
    self.assertRegex(lines[8], r"^whole job +5m00s +4m40s +1.07x ")

  def test_a_data_step_found_in_the_store_is_marked(self):
    stored = [DATA[0], _measured("partition", 2.0, stages=[_stage("partition", True)])]
    self.assertRegex(job_report.table(stored, self.modes)[3], r"^partition \(cache hit\)\*")

  def test_the_notes_say_when_the_data_was_a_cache_hit_and_what_the_ratio_is(self):
    notes = job_report.table_notes(DATA, self.modes)
    self.assertNotIn("cache hits here", notes[0])
    self.assertTrue(notes[1].startswith("ratio: portable's wall time"))
    stored = [_measured("download", 2.0, stages=[_stage("download", True)])]
    notes = job_report.table_notes(stored, {"portable": _mode(120.0, 0.75)})
    self.assertIn("cache hits here", notes[0])
    self.assertEqual(notes[1], "a total's peak RSS is its largest step's")

  def test_one_mode_has_no_ratio_column(self):
    lines = job_report.table(DATA, {"nondeterministic": _mode(100.0, 0.76)})
    self.assertRegex(lines[1], r"^stage +nondeterministic +nondeterministic +nondeterministic$")
    self.assertRegex(lines[4], r"^train +1m40s +3m20s +3.00 GB$")


class MetricsTest(absltest.TestCase):

  def test_equal_metrics_do_not_differ(self):
    by_mode = job_report.metrics_by_mode({"portable": _mode(120.0, 0.75),
                                          "nondeterministic": _mode(100.0, 0.75)})
    self.assertEqual(job_report.metric_differences(by_mode), {})
    self.assertEqual(job_report.metrics_lines(by_mode),
                     ["test IoU: portable 0.7500, nondeterministic 0.7500",
                      "metrics differ: no (every metric of every stage is equal)"])

  def test_a_differing_metric_is_listed_with_each_modes_value(self):
    by_mode = job_report.metrics_by_mode({"portable": _mode(120.0, 0.75),
                                          "nondeterministic": _mode(100.0, 0.76)})
    self.assertEqual(job_report.metric_differences(by_mode),
                     {"evaluate.test_mean_iou": [0.75, 0.76]})
    self.assertEqual(job_report.metrics_lines(by_mode)[1:],
                     ["metrics differ: yes, 1 of 2 (portable, nondeterministic):",
                      "  evaluate.test_mean_iou: 0.75, 0.76"])

  def test_a_metric_one_mode_lacks_differs(self):
    self.assertEqual(job_report.metric_differences({"a": {"x": 1.0}, "b": {}}),
                     {"x": [1.0, None]})

  def test_one_mode_reports_its_iou_only(self):
    by_mode = job_report.metrics_by_mode({"portable": _mode(120.0, 0.75)})
    self.assertEqual(job_report.metrics_lines(by_mode), ["test IoU: portable 0.7500"])


class RecordTest(absltest.TestCase):

  def test_the_record_is_json_with_cpu_time_and_what_was_computed(self):
    record = json.loads(json.dumps(_mode(60.0, 0.5)[0].record()))
    self.assertEqual(record["cpu_seconds"], 120.0)
    self.assertEqual(record["computed"], ["train"])
    self.assertEqual(record["argv"], ["python", "-m", "train"])


class EtaTest(absltest.TestCase):

  def test_training_left_follows_the_pace_of_the_epochs_done(self):
    # Epochs 1, 2 and 3 of 5 began at 10, 30 and 50 s: 20 s an epoch, so training ends at 110.
    starts = [(1, 5, 10.0), (2, 5, 30.0), (3, 5, 50.0)]
    self.assertAlmostEqual(job_report.training_left(starts, 55.0), 55.0)
    self.assertEqual(job_report.training_left(starts, 200.0), 0.0)

  def test_training_left_is_unknown_before_an_epoch_is_done(self):
    self.assertIsNone(job_report.training_left([], 5.0))
    self.assertIsNone(job_report.training_left([(1, 12, 3.0)], 5.0))

  def test_step_left_prefers_training_then_the_prior_run(self):
    self.assertEqual(job_report.step_left(30.0, 12.0, 100.0), 12.0)
    self.assertEqual(job_report.step_left(30.0, None, 100.0), 70.0)
    self.assertEqual(job_report.step_left(130.0, None, 100.0), 0.0)
    self.assertIsNone(job_report.step_left(30.0, None, None))

  def test_run_left_says_whether_every_step_was_counted(self):
    self.assertEqual(job_report.run_left(10.0, [20.0, 30.0]), (60.0, True))
    self.assertEqual(job_report.run_left(10.0, [None, 30.0]), (40.0, False))
    self.assertEqual(job_report.run_left(None, [None]), (None, False))

  def test_durations(self):
    self.assertEqual(job_report.duration(45.21), "45.2s")
    self.assertEqual(job_report.duration(725), "12m05s")
    self.assertEqual(job_report.duration(3725), "1h02m05s")

  def test_the_progress_line(self):
    estimate = job_report.Estimate(725.0, 3725.0, "5/12", 370.0, 2700.0, False)
    self.assertEqual(estimate.line("portable", "train", 4, 8),
                     "portable 4/8 train, epoch 5/12: 12m05s in it, about 6m10s left; "
                     "run 1h02m05s, at least 45m00s left")
    unknown = job_report.Estimate(5.0, 5.0, None, None, None, False)
    self.assertEqual(unknown.line("data", "download", 1, 8),
                     "data 1/8 download: 5.0s in it; run 5.0s")


if __name__ == "__main__":
  absltest.main()
