"""Markdown tables from column specs: the one renderer of every table the project prints.

A ``Column`` names its header, how a row's value is formatted and its alignment; ``markdown``
renders rows (sequences of values, one per column) under them. ``None`` is an empty cell.

>>> print(markdown([Column("model", right=False), Column("us", "{:.1f}")], [("part1", 6.54)]))
| model | us |
| --- | ---: |
| part1 | 6.5 |
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple


class Column(NamedTuple):
    """One column: its header, its format (a ``str.format`` pattern or a function of the value)
    and its alignment (numbers right, text left)."""

    head: str
    fmt: str | Callable[[Any], str] = "{}"
    right: bool = True

    def cell(self, value: Any) -> str:
        if value is None:
            return ""
        return self.fmt(value) if callable(self.fmt) else self.fmt.format(value)


def markdown(columns: Sequence[Column | str], rows: Iterable[Sequence[Any]]) -> str:
    """The rows under the columns' headers, as a Markdown table (a plain string header is a
    left-aligned column of text)."""
    columns = [c if isinstance(c, Column) else Column(c, right=False) for c in columns]
    lines = [
        "| " + " | ".join(c.head for c in columns) + " |",
        "| " + " | ".join("---:" if c.right else "---" for c in columns) + " |",
    ]
    for row in rows:
        if len(row) != len(columns):
            raise ValueError(f"a row has {len(row)} values for {len(columns)} columns: {row!r}")
        lines.append("| " + " | ".join(c.cell(v) for c, v in zip(columns, row, strict=True)) + " |")
    return "\n".join(lines)
