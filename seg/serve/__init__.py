"""Serving: the export and release stages, the release gate, prediction on photos."""
