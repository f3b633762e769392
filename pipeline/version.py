"""reproseg's version, as `--version` prints it beside the code digest (pipeline.code.tree_digest):
PEP 440, with .dev0 until the first release (CHANGELOG.md's "Unreleased")."""

VERSION = "0.1.0.dev0"
