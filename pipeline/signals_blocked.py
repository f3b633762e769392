"""Imported first by every main, before any import starts a thread (NumPy's BLAS pool,
TensorFlow's): blocks SIGINT and SIGTERM in the main thread, so that every thread inherits the
mask and only pipeline.stopping's thread takes them. A library imports pipeline.stopping,
which blocks nothing until its watch() runs."""

import signal

from pipeline import child_process

signal.pthread_sigmask(signal.SIG_BLOCK, child_process.STOP_SIGNALS)
