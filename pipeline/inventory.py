"""Looking after a store: what it holds, where an output came from, whether its bytes are
intact, and what can be removed. The logic of `bazel run //pipeline:store -- COMMAND`."""

import dataclasses
import json
import os
import re
import shutil

from pipeline import digest as digestlib
from pipeline import errors
from pipeline import file_systems
from pipeline import names
from pipeline import stage
from pipeline import store as storelib


@dataclasses.dataclass(frozen=True)
class Entry:
  """One manifest: a stage run whose output is in the store (its folder: path)."""
  stage: str
  key: str
  output: str
  started_utc: str
  path: str
  manifest: dict

  @property
  def size(self):
    """Bytes of the output's files, read when asked (`store ls`): `store runs` needs none."""
    return file_systems.tree_size(self.path)


def manifests(store):
  """Every readable manifest, as {key: manifest}."""
  found = {}
  for name in sorted(os.listdir(os.path.join(store.root, "keys"))):
    if name.endswith(".json"):
      manifest = store.lookup(name[:-len(".json")])
      if manifest is not None:
        found[manifest["key"]] = manifest
  return found


def entries(store, stage_name=None):
  """Entries, newest first; only one stage's if stage_name is given."""
  listed = [Entry(m["stage"], key, m["output"], m["provenance"].get("started_utc", ""),
                  store.object_path(m["output"]), m)
            for key, m in manifests(store).items() if stage_name in (None, m["stage"])]
  return sorted(listed, key=lambda e: _published_ns(store, e.key), reverse=True)


def _published_ns(store, key):
  """When a run was published: its manifest's write time (start times have whole seconds)."""
  return os.stat(store.manifest_path(key)).st_mtime_ns


_GONE = ("no longer in %s (removed by `store gc` or `store verify --remove_damaged`): run it "
         "again")


def _release(store, ref):
  """The newest manifest whose output a release ("releases/<name>[/<version>]") is: one output
  has several manifests when keys changed and the bits did not."""
  output = names.resolve(store, ref)
  made = newest_by_output(store, manifests(store)).get(output)
  if made is None:
    raise errors.Error(("%s is the output %s, " + _GONE) % (ref, output, store.root))
  return made


def newest_by_output(store, found):
  """{output digest: the newest published of found's manifests ({key: manifest}) with that
  output}: one output has several manifests when keys changed and the bits did not."""
  newest = {}
  for key in sorted(found, key=lambda key: _published_ns(store, key)):
    newest[found[key]["output"]] = found[key]
  return newest


def _named_run(store, name, key):
  stored = manifests(store).get(key)
  if stored is None:
    raise errors.Error(("the run name %s is on the key %s, " + _GONE + ", or give the name to "
                        "another run with `store name`") % (name, key, store.root))
  return stored


def find(store, prefix):
  """The manifest whose key or output digest starts with prefix, of a release
  ("releases/<name>[/<version>]", _release) or of a named run (pipeline.names); an error
  unless unique."""
  if "/" in prefix:
    return _release(store, prefix)
  named = names.run_names(store)
  if prefix in named:
    return _named_run(store, prefix, named[prefix])
  if not re.match(r"^[0-9a-f]*$", prefix):
    raise errors.Error("%r is neither a run's name nor a key or output digest prefix (see "
                       "`store ls`; `store name` names a run)" % prefix)
  if len(prefix) < 4:
    raise errors.Error("%r: give at least 4 hex digits of a key or output digest" % prefix)
  matches = {key: m for key, m in manifests(store).items()
             if key.startswith(prefix) or m["output"].startswith(prefix)}
  if not matches:
    raise errors.Error("no key or output in %s starts with %s (see `store ls`)"
                       % (store.root, prefix))
  if len(matches) > 1:
    raise errors.Error("%s is ambiguous: %s; give more digits" % (
        prefix, ", ".join("%s %s" % (m["stage"], k[:16]) for k, m in sorted(matches.items()))))
  return next(iter(matches.values()))


def input_digests(manifest):
  """The digests a stage was made from (upstream outputs, archives), in key-record order;
  inputs that are not digests (None: no backbone weights) left out."""
  return [d for d in manifest["key_record"]["inputs"].values() if isinstance(d, str)]


def lineage(store, manifest, by_output=None):
  """[manifest, its inputs' manifests, ...] back to the source archives, breadth first, each
  output once: an output that several later stages share (partition under train, calibrate
  and evaluate) is listed where it is first reached. An output made under several keys is
  its newest manifest's. by_output: newest_by_output(store, manifests(store)), if already
  made (`store runs` walks every run's lineage)."""
  by_output = by_output or newest_by_output(store, manifests(store))
  chain, todo, seen = [], [manifest], {manifest["output"]}
  while todo:
    current = todo.pop(0)
    chain.append(current)
    for d in input_digests(current):
      if d in by_output and d not in seen:
        seen.add(d)
        todo.append(by_output[d])
  return chain


def descendants(store, manifest):
  """The manifests of outputs made, directly or not, from manifest's output."""
  found, made_from, rest = [], {manifest["output"]}, list(manifests(store).values())
  grew = True
  while grew:
    grew = False
    for m in list(rest):
      if made_from.intersection(input_digests(m)):
        found.append(m)
        made_from.add(m["output"])
        rest.remove(m)
        grew = True
  return found


def link_outputs(store, target, manifests):
  """Puts each manifest and its output into the store target, the output's files as hard links
  to store's (no copy; both stores on one file system), staged and published by
  target.put_tree like any output: a stage run on target finds them as cache hits. An output
  target holds already is left as it is. Raises errors.Error if an output's files no longer
  give its digest."""
  for manifest in manifests:
    if not os.path.isdir(target.object_path(manifest["output"])):
      with target.staging("link-") as staged:
        tree = os.path.join(staged, "tree")
        shutil.copytree(store.object_path(manifest["output"]), tree, copy_function=os.link)
        if target.put_tree(tree) != manifest["output"]:
          raise errors.Error("output %s in %s no longer gives its digest: `store verify` "
                             "names the damage" % (manifest["output"], store.root))
    target.write_manifest(manifest["key"], manifest)


def verify(store, digests=None):
  """{digest: problem} of the stored outputs (all, or the given ones) whose files no longer
  match their digest or listing (Store.damage); empty when every one is intact."""
  objects = os.path.join(store.root, "objects")
  if digests is None:
    digests = sorted(n for n in os.listdir(objects) if not n.endswith(".sha256"))
  problems = {digest: store.damage(digest) for digest in digests}
  return {digest: problem for digest, problem in problems.items() if problem}


def garbage(store, keep_runs=False):
  """Paths that no manifest needs: unreferenced outputs and blobs, and (unless keep_runs)
  what the run folders of finished runs hold but their TensorBoard logs (stage.LOGS_FOLDER:
  runs stay comparable there): checkpoints. An unfinished run's folder is kept whole: it is how
  that run resumes."""
  kept = manifests(store)
  outputs = {m["output"] for m in kept.values()}
  inputs = {d for m in kept.values() for d in input_digests(m)}
  paths = []
  objects = os.path.join(store.root, "objects")
  for name in sorted(os.listdir(objects)):
    if name.split(".")[0] not in outputs:
      paths.append(os.path.join(objects, name))
  blobs = os.path.join(store.root, "blobs")
  paths += [os.path.join(blobs, n) for n in sorted(os.listdir(blobs)) if n not in inputs]
  if not keep_runs:
    runs = os.path.join(store.root, "runs")
    finished = [os.path.join(runs, n) for n in sorted(os.listdir(runs)) if n in kept]
    paths += [path for path in finished if not os.path.isdir(path)]  # no stage writes a file
    paths += [os.path.join(folder, n) for folder in finished if os.path.isdir(folder)
              for n in sorted(os.listdir(folder)) if n != stage.LOGS_FOLDER]
  return paths


def remove(paths):
  for path in paths:
    if os.path.isdir(path):
      storelib.remove_tree(path)
    elif os.path.exists(path):
      os.chmod(path, 0o644)
      os.unlink(path)


def size_of(paths):
  return sum(map(file_systems.tree_size, paths))


def summary(store, manifest):
  """What `store show` prints: the manifest's essentials, files and lineage, as a dict."""
  def brief(m):
    return {"stage": m["stage"], "key": m["key"], "output": m["output"],
            "params": m["key_record"]["params"], "inputs": m["key_record"]["inputs"],
            "code_sha256": digestlib.record_digest(m["key_record"]["code"])}

  shown = {"stage": manifest["stage"], "key": manifest["key"], "output": manifest["output"],
           "path": store.object_path(manifest["output"]),
           "files": store.file_digests(manifest["output"]),
           "details": manifest.get("details"), "provenance": manifest["provenance"],
           "determinism": manifest["key_record"]["runtime"].get("determinism"),
           "lineage": [brief(m) for m in lineage(store, manifest)]}
  released = [ref for ref, digest in names.listing(store) if digest == manifest["output"]]
  if released:
    shown["releases"] = released
  run_names = names.names_by_key(store).get(manifest["key"])
  if run_names:
    shown["run_names"] = run_names
  if "never_a_cache_hit" in manifest:  # a run that is not repeatable (pipeline.stage.plan)
    shown["never_a_cache_hit"] = manifest["never_a_cache_hit"]
  return shown


def to_json(value):
  return json.dumps(value, indent=1, sort_keys=True)
