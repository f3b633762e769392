"""Seeds: every random number in reproseg comes from the run's one --seed through
derive_seed(seed, purpose...), and a stage's manifest lists the seeds its own build derived
(recording_seeds). The one exception is asked for: --noseeded_dropout (the seed's Figure 9)
draws fresh dropout seeds, and such a run is never a cache hit (pipeline.stage.plan)."""

import contextlib
import hashlib

from pipeline import digest

_RECORDERS = []  # the dicts of the recording_seeds() blocks open now


def derive_seed(seed, *purpose):
  """A 31-bit seed for one purpose, e.g. derive_seed(42, "dropout", "up0"); stable everywhere:
  the first 4 bytes of sha256(canonical JSON of [seed, *purpose]), top bit cleared.

  Each derivation is recorded in every recording_seeds() block open around it.
  """
  h = hashlib.sha256(digest.canonical_json([seed] + list(purpose))).digest()
  value = int.from_bytes(h[:4], "big") & 0x7FFFFFFF
  for recorder in _RECORDERS:
    recorder["/".join(str(p) for p in (seed,) + purpose)] = value
  return value


@contextlib.contextmanager
def recording_seeds():
  """Yields a dict that collects {"<seed>/<purpose>/...": value} of every seed derived inside
  the block, and only those: a stage's manifest lists what its own build derived, whatever
  else ran before it in the process."""
  seeds = {}
  _RECORDERS.append(seeds)
  try:
    yield seeds
  finally:
    _RECORDERS[:] = [r for r in _RECORDERS if r is not seeds]  # by identity: {} == {}
