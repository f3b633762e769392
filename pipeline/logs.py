"""TensorBoard's view of a store: `<store>/tensorboard/` holds a symbolic link per run that has
TensorBoard logs (runs/<key>/tensorboard, pipeline.stage.LOGS_FOLDER), named after the run:
each of its run names (pipeline.names), else "<stage>-<the key's first 16 hex digits>". So

  ./dev tensorboard --logdir ~/.cache/reproseg/store/tensorboard

lists runs by name where the store keeps them by key. The links are a view, in no key or
output: refresh() makes them again from the manifests and the run names, after every stage
command and `store name`.
"""

import os

from absl import logging

from pipeline import inventory
from pipeline import names
from pipeline import stage

FOLDER = "tensorboard"
_TEMPORARY = ".tmp"  # a link in the making: NAME.<pid>.tmp, renamed over NAME


def link_names(store):
  """{link name: key} of every stored run whose run folder holds TensorBoard logs."""
  named = names.names_by_key(store)
  links = {}
  for key, manifest in inventory.manifests(store).items():
    if os.path.isdir(os.path.join(store.run_dir(key), stage.LOGS_FOLDER)):
      for name in named.get(key) or ["%s-%s" % (manifest["stage"], key[:16])]:
        links[name] = key
  return links


def _ours(folder, name):
  """Whether folder/name is a link this module made: to ../runs/<key>/tensorboard, and not
  another process's link in the making (NAME.<pid>.tmp)."""
  path = os.path.join(folder, name)
  if name.endswith(_TEMPORARY) or not os.path.islink(path):
    return False
  parts = os.readlink(path).split(os.sep)
  return len(parts) == 4 and parts[:2] == ["..", "runs"] and parts[3] == stage.LOGS_FOLDER


def refresh(store):
  """Makes <store>/tensorboard/ hold the links of link_names(store), each replaced
  atomically, and drops the links it made to runs no longer listed; other files and links are
  left alone. Best effort: the stage outputs are stored already, so a failure (a read-only
  store, a folder of another user's, another process refreshing at once) is a warning, and the
  next command makes the links again."""
  if not store.writable:
    return
  folder = os.path.join(store.root, FOLDER)
  try:
    os.makedirs(folder, exist_ok=True)
    wanted = {name: os.path.join("..", "runs", key, stage.LOGS_FOLDER)
              for name, key in link_names(store).items()}
    for name, target in wanted.items():
      path = os.path.join(folder, name)
      if not (os.path.islink(path) and os.readlink(path) == target):
        temporary = "%s.%d%s" % (path, os.getpid(), _TEMPORARY)
        os.symlink(target, temporary)
        os.replace(temporary, path)
    for name in os.listdir(folder):
      if name not in wanted and _ours(folder, name):
        os.unlink(os.path.join(folder, name))
  except OSError as e:  # FileNotFoundError: another process renamed or dropped a link first
    logging.warning("TensorBoard's links in %s were not brought up to date (%s); the next "
                    "stage command tries again", folder, e)
