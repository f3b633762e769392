"""TensorBoard's view of a store: `<store>/tensorboard/` holds a symbolic link per run that has
TensorBoard logs (runs/<key>/tensorboard, pipeline.stage.LOGS_FOLDER), named after the run:
each of its run names (pipeline.names), else "<stage>-<the key's first 16 hex digits>". So

  ./dev tensorboard --logdir ~/.cache/reproseg/store/tensorboard

lists runs by name where the store keeps them by key. The links are a view, in no key or
output: refresh() makes them again from the manifests and the run names, after every stage
command and `store name`.
"""

import os

from pipeline import inventory
from pipeline import names
from pipeline import stage

FOLDER = "tensorboard"


def link_names(store):
  """{link name: key} of every stored run whose run folder holds TensorBoard logs."""
  named = names.names_by_key(store)
  links = {}
  for key, manifest in inventory.manifests(store).items():
    if os.path.isdir(os.path.join(store.run_dir(key), stage.LOGS_FOLDER)):
      for name in named.get(key) or ["%s-%s" % (manifest["stage"], key[:16])]:
        links[name] = key
  return links


def refresh(store):
  """Makes <store>/tensorboard/ hold exactly the links of link_names(store), each replaced
  atomically; other files there are left alone. Does nothing on a read-only store."""
  if not store.writable:
    return
  folder = os.path.join(store.root, FOLDER)
  os.makedirs(folder, exist_ok=True)
  wanted = {name: os.path.join("..", "runs", key, stage.LOGS_FOLDER)
            for name, key in link_names(store).items()}
  for name, target in wanted.items():
    path = os.path.join(folder, name)
    if not (os.path.islink(path) and os.readlink(path) == target):
      temporary = "%s.%d.tmp" % (path, os.getpid())
      os.symlink(target, temporary)
      os.replace(temporary, path)
  for name in os.listdir(folder):
    if name not in wanted and os.path.islink(os.path.join(folder, name)):
      os.unlink(os.path.join(folder, name))
