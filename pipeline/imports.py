"""The reproseg modules a Python source file imports, read from its syntax tree: no code runs,
and an import inside a function counts.

One reading serves the stage keys (pipeline/code.py: a stage's code is its build module's import
closure) and the build's import boundaries (tools/import_boundaries.py).
"""

import ast

PACKAGES = ("pipeline", "data_tools", "seg", "kernels")  # reproseg's top-level packages


def statements(path):
  """(line, names) for each module an import statement of the file at path brings in: names is
  ("a.b",) for `import a.b`, and ("a.x", "a") for `from a import x`, where x is a submodule
  of a or a name defined in it. A relative import (`from . import x`) gives (line, None): the
  stage keys cannot follow it."""
  with open(path, "rb") as f:
    tree = ast.parse(f.read(), filename=path)
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      for alias in node.names:
        yield node.lineno, (alias.name,)
    elif isinstance(node, ast.ImportFrom):
      if node.level:
        yield node.lineno, None
        continue
      for alias in node.names:
        yield node.lineno, (node.module + "." + alias.name, node.module)


def is_reproseg(name):
  """Whether a module name is in one of reproseg's PACKAGES."""
  return name.split(".")[0] in PACKAGES
