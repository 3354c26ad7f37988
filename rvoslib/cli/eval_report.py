"""What ``rvos eval`` prints: readable tables by default, JSON lines with ``--json``.

The JSON lines are those of earlier releases, one object per line: the protocol first, then one
row per sequence, the summary last (``json.loads(out.splitlines()[-1])`` reads it). The tables
hold the same numbers, rounded to 4 decimals, for people.

Example:
    >>> report = EvalReport(as_json=False)
    >>> report.rows([{"video_id": "v", "key": "0", "num_frames": 2, "J": 0.5, "F": 0.7,
    ...               "JF": 0.6}])
    video  expression  frames  J       F       J&F
    -----  ----------  ------  ------  ------  ------
    v      0           2       0.5000  0.7000  0.6000
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from rvoslib._table import format_table

__all__ = ["EvalReport"]

#: Columns of the per-sequence rows, by the keys the rows carry: (key, title).
_ROW_COLUMNS = (
    ("video_id", "video"),
    ("key", "expression"),
    ("sequence", "sequence"),
    ("num_frames", "frames"),
    ("J", "J"),
    ("F", "F"),
    ("JF", "J&F"),
)
#: Columns of the per-kind table (``--by-kind``).
_KIND_COLUMNS = (("kind", "kind"), ("count", "count"), ("J", "J"), ("F", "F"), ("JF", "J&F"))


class EvalReport:
    """Prints the results of ``rvos eval`` as tables (default) or JSON lines (``--json``).

    Args:
        as_json: One JSON object per line instead of tables.
        stream: Where to print (default: ``sys.stdout`` at the time of each print).
    """

    def __init__(self, as_json: bool, stream: TextIO | None = None) -> None:
        self.as_json = as_json
        self.stream = stream

    def _print(self, text: str) -> None:
        print(text, file=self.stream or sys.stdout)

    def header(self, entry: Mapping[str, Any]) -> None:
        """What is evaluated, before the work starts (e.g. ``{"protocol": "all"}``)."""
        if self.as_json:
            self._print(json.dumps(dict(entry)))
        else:
            self._print("  ".join(f"{key}: {value}" for key, value in entry.items()))

    def rows(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """The per-sequence rows: a JSON line each, or one table of the columns they carry
        (video, expression, sequence, frames, J, F, J&F)."""
        if self.as_json:
            for row in rows:
                self._print(json.dumps(dict(row)))
            return
        if not rows:
            return
        present = [(key, title) for key, title in _ROW_COLUMNS if key in rows[0]]
        keys, titles = zip(*present) if present else ((), ())
        self._print(format_table(rows, keys, titles))

    def summary(self, summary: Mapping[str, Any]) -> None:
        """The summary: the last JSON line, or a blank line and a ``metric  value`` table of its
        scalars, then the per-kind table when it holds ``by_kind``."""
        if self.as_json:
            self._print(json.dumps(dict(summary)))
            return
        from rvoslib.training.logs import summary_table

        self._print("")
        self._print(summary_table(summary))
        kinds = summary.get("by_kind")
        if kinds:
            table = [{"kind": kind or "-", **values} for kind, values in kinds.items()]
            keys, titles = zip(*_KIND_COLUMNS)
            self._print("")
            self._print(format_table(table, keys, titles))

    def text(self, text: str) -> None:
        """A preformatted report (A2D/JHMDB): printed in table mode, left out with ``--json``
        (the summary line holds the same numbers)."""
        if not self.as_json:
            self._print(text)
