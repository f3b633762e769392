"""Machinery that every reproseg stage shares: the content-addressed store, stage keys,
determinism switches and deterministic file formats."""
