"""The expected calibration error's bins: BINS equal-width bins of the top-class probability,
per pixel (Guo et al., "On Calibration of Modern Neural Networks", 2017, section 2). In a module
of its own, free of TensorFlow, as the calibrate and evaluate stages' keys record the count.
"""

BINS = 15
