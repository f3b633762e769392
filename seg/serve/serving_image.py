"""The TensorFlow Serving image that serves a release, named here only: the `docker run` line
that seg/release_main.py prints, and deploy/k8s/inferenceservice.yaml's runtimeVersion (which
tests/deploy_test.py checks against VERSION).

2.20.0 is the newest TensorFlow Serving release; there is none for TensorFlow 2.21, which
writes reproseg's SavedModels. TensorFlow 2.20's loader (tensorflow-cpu 2.20.0, with
tf.saved_model.load) loaded a release that this repository wrote with 2.21 and gave, through
both signatures, the class ids and probabilities of 2.21, bit for bit
(docs/release-and-serving.md, "Serving"). The TensorFlow Serving binary itself was not run.

No stage imports this module (seg/serve/release.py does not), so no key holds it.
"""

VERSION = "2.20.0"
IMAGE = "tensorflow/serving:" + VERSION
