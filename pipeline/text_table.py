"""Tables as aligned text, for terminals: `store runs` and //seg:tune's trial table."""


def aligned(rows):
  """Rows of cells (strings) as lines, each column as wide as its widest cell."""
  widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
  return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
