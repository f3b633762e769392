"""The Kubernetes examples in deploy/k8s/ against the code: every pod runs the packaged image of
this version through one of its reproseg-* wrappers, with no source checkout, Nix or Bazel, and
without Istio's sidecar; the InferenceService runs the TensorFlow Serving version that
seg/release_main.py prints. With negative controls: the checks refuse pods that break each rule."""

import copy
import glob
import os
import re

from absl.testing import absltest
import yaml

from pipeline import code
from pipeline import version
from seg.serve import serving_image

# The registry placeholder the manifests' comments say to replace, and the image they run.
REGISTRY = "REGISTRY"
IMAGE = REGISTRY + "/reproseg:" + version.VERSION
# The wrappers the image puts on PATH (issue 35), each a binary with the same flags.
WRAPPERS = {"reproseg-" + name for name in (
    "train", "calibrate", "evaluate", "export", "predict", "release", "tune", "download",
    "partition", "store")}
FORBIDDEN = re.compile(r"\b(git|nix|bazel)\b", re.IGNORECASE)
ISTIO = "sidecar.istio.io/inject"
# Pod templates in each file: TFJob replicas, the tune Job, the Katib trial's Job.
TEMPLATES = {"inferenceservice.yaml": 0, "tfjob.yaml": 1, "tune.yaml": 2}


def manifests():
  """{file name: [its YAML documents]} for every deploy/k8s/*.yaml."""
  found = {}
  for path in sorted(glob.glob(os.path.join(code.ROOT, "deploy", "k8s", "*.yaml"))):
    with open(path) as f:
      found[os.path.basename(path)] = [d for d in yaml.safe_load_all(f) if d]
  return found


def pod_templates(node):
  """Every pod template in a document, wherever it is: a mapping whose spec has containers."""
  if isinstance(node, list):
    return [t for item in node for t in pod_templates(item)]
  if not isinstance(node, dict):
    return []
  if isinstance(node.get("spec"), dict) and "containers" in node["spec"]:
    return [node]
  return [t for value in node.values() for t in pod_templates(value)]


def problems(template):
  """What a pod template breaks of the rules above, as sentences; [] if nothing."""
  found = []
  annotations = (template.get("metadata") or {}).get("annotations") or {}
  if annotations.get(ISTIO) != "false":
    found.append('%s is %r, not "false"' % (ISTIO, annotations.get(ISTIO)))
  spec = template["spec"]
  if spec.get("initContainers"):
    found.append("initContainers: %s" % [c.get("name") for c in spec["initContainers"]])
  volumes = {v["name"]: v for v in spec.get("volumes", [])}
  for name, volume in volumes.items():
    if (volume.get("persistentVolumeClaim") or {}).get("claimName") != "reproseg-store":
      found.append("volume %s is not the store's claim" % name)
  for container in spec["containers"]:
    name = container.get("name")
    if container.get("image") != IMAGE:
      found.append("container %s runs %s, not %s" % (name, container.get("image"), IMAGE))
    command = list(container.get("command") or [])
    args = [str(a) for a in container.get("args") or []]
    if not command or command[0] not in WRAPPERS:
      found.append("container %s's command %s does not start with a reproseg-* wrapper"
                   % (name, command))
    words = FORBIDDEN.findall(" ".join(command + args))
    if words:
      found.append("container %s's command or args name %s" % (name, sorted(set(words))))
    if "workingDir" in container:
      found.append("container %s has a workingDir (a source tree)" % name)
    flags = dict(a[2:].split("=", 1) for a in command + args if a.startswith("--") and "=" in a)
    if flags.get("store") != "/store" or not any(
        m.get("mountPath") == "/store" for m in container.get("volumeMounts", [])):
      found.append("container %s does not pass --store=/store with the store mounted there"
                   % name)
    cpus = ((container.get("resources") or {}).get("requests") or {}).get("cpu")
    pools = int(flags.get("intra_op_threads", 0)) * int(flags.get("parallel_trials", 1))
    if str(pools) != str(cpus):
      found.append("container %s: --intra_op_threads times --parallel_trials is %d, its CPU "
                   "request %s" % (name, pools, cpus))
  return found


# The pods before issue 35: a git clone, then Nix and Bazel in the pod, on a source volume.
_CLONED = {
    "spec": {
        "initContainers": [{"name": "source", "image": "alpine/git:2.47.2",
                            "command": ["sh", "-c"], "args": ["git clone URL /src"]}],
        "containers": [{
            "name": "tensorflow", "image": "nixos/nix:2.24.9", "workingDir": "/src",
            "command": ["nix", "develop", "--command", "bazel", "run", "//seg:train", "--",
                        "--store=/store", "--intra_op_threads=2"],
            "resources": {"requests": {"cpu": "2"}},
            "volumeMounts": [{"name": "source", "mountPath": "/src"},
                             {"name": "store", "mountPath": "/store"}]}],
        "volumes": [{"name": "source", "emptyDir": {}},
                    {"name": "store", "persistentVolumeClaim": {"claimName": "reproseg-store"}}],
    }}


class DeployTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.manifests = manifests()

  def templates(self):
    return {name: [t for d in docs for t in pod_templates(d)]
            for name, docs in self.manifests.items()}

  def test_every_pod_runs_a_wrapper_of_this_versions_image_and_nothing_else(self):
    templates = self.templates()
    self.assertEqual({name: len(found) for name, found in templates.items()}, TEMPLATES)
    for name, found in templates.items():
      for template in found:
        self.assertEqual(problems(template), [], name)

  def test_the_katib_trials_primary_container_is_the_one_running_train(self):
    experiment = next(d for d in self.manifests["tune.yaml"] if d["kind"] == "Experiment")
    trial = experiment["spec"]["trialTemplate"]
    (template,) = pod_templates(trial["trialSpec"])
    (container,) = template["spec"]["containers"]
    self.assertEqual(container["name"], trial["primaryContainerName"])
    self.assertEqual(container["command"], ["reproseg-train"])

  def test_every_image_named_in_the_files_is_this_version(self):
    for name in self.manifests:
      with open(os.path.join(code.ROOT, "deploy", "k8s", name)) as f:
        text = f.read()
      tags = [t.rstrip(".") for t in re.findall(r"\breproseg:([\w.+!-]+)", text)]
      if TEMPLATES[name]:
        self.assertNotEmpty(tags, name)
      for tag in tags:
        self.assertEqual(tag, version.VERSION, name)  # comments included

  def test_the_inference_service_runs_the_serving_version_release_prints(self):
    (service,) = [d for d in self.manifests["inferenceservice.yaml"]
                  if d["kind"] == "InferenceService"]
    self.assertEqual(service["spec"]["predictor"]["tensorflow"]["runtimeVersion"],
                     serving_image.VERSION)
    self.assertEqual(serving_image.IMAGE, "tensorflow/serving:" + serving_image.VERSION)

  def test_the_checks_refuse_the_cloned_pod_and_each_broken_rule(self):
    cloned = problems(_CLONED)
    for expected in (ISTIO, "initContainers", "volume source", "runs nixos/nix",
                     "does not start with a reproseg-* wrapper", "['bazel', 'nix']",
                     "workingDir"):
      self.assertTrue(any(expected in p for p in cloned), (expected, cloned))
    good = pod_templates(self.manifests["tfjob.yaml"])[0]
    self.assertEqual(problems(good), [])
    breaks = {
        "initContainers": lambda t: t["spec"].update(initContainers=[{"name": "x"}]),
        ISTIO: lambda t: t["metadata"]["annotations"].pop(ISTIO),
        "not \"false\"": lambda t: t["metadata"]["annotations"].update({ISTIO: "true"}),
        "not " + IMAGE: lambda t: t["spec"]["containers"][0].update(
            image=REGISTRY + "/reproseg:0.0.1"),
        "wrapper": lambda t: t["spec"]["containers"][0].update(
            command=["sh", "-c", "reproseg-train"]),
        "['git']": lambda t: t["spec"]["containers"][0]["args"].append("--note=git"),
        "CPU request": lambda t: t["spec"]["containers"][0]["resources"]["requests"].update(
            cpu="4"),
    }
    for expected, edit in breaks.items():
      broken = copy.deepcopy(good)
      edit(broken)
      self.assertTrue(any(expected in p for p in problems(broken)), (expected,
                                                                       problems(broken)))


if __name__ == "__main__":
  absltest.main()
