"""Column selection: one parser for every reader (text, ``.npy``, Parquet) and the CLI.

A selection is a comma-separated string (``"0-12,^5"``) or a sequence of names and
0-based positions (``["a", 3, "5-7"]``).  Each item is

* a column name (when the table has names; an exact name always wins, so a column
  called ``"x-1"`` is not read as a range);
* a 0-based position;
* a range ``a-b`` of positions or names, both ends included;
* any of those behind ``^``: an exclusion.

Columns come in the order the items name them; exclusions are removed afterwards.  A
selection of exclusions only starts from all columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from gmmkit.data.text import DataFileError

__all__ = ["ColumnSpec", "parse_columns"]

ColumnSpec = str | int | Sequence[str | int] | None


def _items(columns: str | int | Sequence[str | int]) -> list[str | int]:
    if isinstance(columns, str):
        return [item.strip() for item in columns.split(",") if item.strip()]
    if isinstance(columns, int | np.integer):
        if isinstance(columns, bool):
            raise TypeError(f"columns must be names or positions, got {columns!r}")
        return [int(columns)]
    items: list[str | int] = []
    for item in columns:
        if isinstance(item, bool) or not isinstance(item, str | int | np.integer):
            raise TypeError(f"columns must be names or positions, got {item!r}")
        items.append(item.strip() if isinstance(item, str) else int(item))
    return items


class _Resolver:
    def __init__(self, names: Sequence[str] | None, n_columns: int, where: str) -> None:
        self.names = list(names) if names is not None else None
        self.position = {name: i for i, name in enumerate(self.names or [])}
        self.n_columns = n_columns
        self.where = where

    def _known(self) -> str:
        if self.names:
            return ", ".join(self.names)
        return f"0..{self.n_columns - 1} (the file has no header)"

    def one(self, item: str | int) -> int:
        """A single column: a name or a position."""
        if isinstance(item, str) and item in self.position:
            return self.position[item]
        if isinstance(item, str):
            if not item.isdigit():
                raise DataFileError(
                    f"{self.where}: unknown column {item!r} (column {item!r} not found; "
                    f"columns: {self._known()})"
                )
            index = int(item)
        else:
            index = item
        if not 0 <= index < self.n_columns:
            raise DataFileError(
                f"{self.where}: column index {index} out of range (the file has "
                f"{self.n_columns} columns: 0..{self.n_columns - 1})"
            )
        return index

    def item(self, item: str | int) -> list[int]:
        """A name, a position or a range ``a-b`` (inclusive)."""
        if isinstance(item, int) or item in self.position or "-" not in item:
            return [self.one(item)]
        first, _, last = item.partition("-")
        if not first.strip() or not last.strip():
            raise DataFileError(
                f"{self.where}: unknown column {item!r}; a range is 'first-last', e.g. "
                f"'0-{self.n_columns - 1}' (columns: {self._known()})"
            )
        start, stop = self.one(first.strip()), self.one(last.strip())
        if stop < start:
            raise DataFileError(
                f"{self.where}: the column range {item!r} runs backwards ({start} > {stop})"
            )
        return list(range(start, stop + 1))


def parse_columns(
    columns: ColumnSpec,
    names: Sequence[str] | None,
    n_columns: int,
    where: str | Path,
) -> list[int]:
    """0-based indices of the selected columns, in selection order.

    Parameters
    ----------
    columns : str, int, sequence of str/int, or None
        The selection (see the module docstring); None selects every column.
    names : sequence of str or None
        The table's column names, None when it has none.
    n_columns : int
    where : str or Path
        Named in error messages (the file).

    Returns
    -------
    list of int

    Raises
    ------
    DataFileError
        An unknown name, a position out of range, a backwards range, a column selected
        twice, or a selection that leaves no column.
    TypeError
        An item that is neither a string nor an integer.
    """
    if columns is None:
        return list(range(n_columns))
    resolver = _Resolver(names, n_columns, str(where))
    chosen: list[int] = []
    excluded: set[int] = set()
    has_inclusions = False
    items = _items(columns)
    if not items:
        raise DataFileError(f"{where}: no columns selected")
    for item in items:
        if isinstance(item, str) and item.startswith("^") and item not in resolver.position:
            excluded.update(resolver.item(item[1:].strip()))
            continue
        has_inclusions = True
        for index in resolver.item(item):
            if index in chosen:
                label = resolver.names[index] if resolver.names else str(index)
                raise DataFileError(f"{where}: column {label!r} is selected twice")
            chosen.append(index)
    if not has_inclusions:
        chosen = list(range(n_columns))
    selected = [index for index in chosen if index not in excluded]
    if not selected:
        raise DataFileError(f"{where}: no columns selected")
    return selected
