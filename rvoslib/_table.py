"""Plain-text tables of numbers for the console (``rvos train``'s summary, ``rvos eval``).

Example:
    >>> print(format_table([{"name": "a", "J": 0.5}, {"name": "bb", "J": None}], ["name", "J"]))
    name  J
    ----  ------
    a     0.5000
    bb    -
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["format_table", "format_value"]


def format_value(value: Any) -> str:
    """A table cell: ints as they are, floats with 4 decimals (1 from 100 up, scientific below
    1e-3), ``None`` as ``-``, anything else as ``str``.

    Example:
        >>> [format_value(v) for v in (3, 0.123456, 1234.56, 2e-5, None, "x", float("nan"))]
        ['3', '0.1235', '1234.6', '2.00e-05', '-', 'x', 'nan']
    """
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int) or not math.isfinite(value):
        return str(value)
    if value != 0 and abs(value) < 1e-3:
        return f"{value:.2e}"
    return f"{value:.1f}" if abs(value) >= 100 else f"{value:.4f}"


def format_table(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    headers: Sequence[str] | None = None,
) -> str:
    """Left-aligned columns under a header and a rule of dashes (no trailing spaces).

    Args:
        rows: One mapping per row; a missing key is shown as ``-``.
        columns: The keys shown, in order.
        headers: The column titles (default: the keys).

    Returns:
        The table's lines joined by newlines.

    Raises:
        ValueError: If ``headers`` and ``columns`` differ in length.
    """
    headers = list(columns if headers is None else headers)
    if len(headers) != len(columns):
        raise ValueError(
            f"headers must name every column: {len(columns)} columns, got {len(headers)} headers"
        )
    cells = [[format_value(row.get(key)) for key in columns] for row in rows]
    widths = [
        max([len(title), *(len(line[i]) for line in cells)]) for i, title in enumerate(headers)
    ]

    def line(values: Sequence[str]) -> str:
        return "  ".join(f"{v:<{w}}" for v, w in zip(values, widths)).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, cells)])
