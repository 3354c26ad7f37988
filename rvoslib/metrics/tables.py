"""The CSV tables of the official ``davis2017-evaluation`` code, written and read back.

``evaluation_method.py`` writes, into the results folder:

* ``global_results-<split>.csv``: one row, columns ``J&F-Mean, J-Mean, J-Recall, J-Decay,
  F-Mean, F-Recall, F-Decay``;
* ``per-sequence_results-<split>.csv``: columns ``Sequence, J-Mean, F-Mean``, one row per
  object named ``<sequence>_<n>``;

with pandas' ``to_csv(index=False, float_format="%.3f")`` (ReferFormer's ``eval_davis.py``
uses ``"%.5f"``). These writers produce the same bytes. Note that the official script reads
existing tables instead of evaluating again ("Using precomputed results..."): delete them to
make it recompute.
"""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path

from rvoslib._io import atomic_write_text
from rvoslib._paths import confined_path
from rvoslib.metrics.official import GLOBAL_COLUMNS, DAVISFolderResult

__all__ = ["PER_SEQUENCE_COLUMNS", "read_official_tables", "write_official_tables"]

PER_SEQUENCE_COLUMNS = ("Sequence", "J-Mean", "F-Mean")


def _csv(header: tuple[str, ...], rows: list[tuple], float_format: str) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(
            [
                ("" if math.isnan(value) else float_format % value)
                if isinstance(value, float)
                else value
                for value in row
            ]
        )
    return buffer.getvalue()


def write_official_tables(
    result: DAVISFolderResult, out_dir: str | os.PathLike, float_format: str = "%.3f"
) -> list[Path]:
    """Write the official global and per-sequence CSV tables of a result, atomically.

    For a result of annotator folders, each annotator's tables go to ``<out_dir>/anno_<k>/``
    (as the official script would write them there) and ``<out_dir>`` gets their average (see
    :meth:`DAVISFolderResult.per_sequence`).

    Args:
        result: From :func:`rvoslib.metrics.evaluate_davis_folder`.
        out_dir: The folder, usually the predictions folder itself.
        float_format: ``"%.3f"`` as the official code (ReferFormer writes ``"%.5f"``).

    Returns:
        The written paths.

    Raises:
        ValueError: ``float_format`` is not a ``%`` float format, or a split or annotator
            folder name that would put a table outside ``out_dir`` (``..``, a separator...);
            checked before any table is written.
    """
    try:
        float_format % 0.5
    except (TypeError, ValueError) as error:
        raise ValueError(f"float_format must be like '%.3f', got {float_format!r}") from error
    out_dir = Path(out_dir)
    targets = _table_paths(result, out_dir)  # every target checked before the first write
    return _write_tables(result, targets, float_format)


def _table_paths(result: DAVISFolderResult, out_dir: Path) -> dict[int, tuple[Path, Path]]:
    """``id(result part) -> (global table, per-sequence table)``, each confined to
    ``out_dir`` (the annotators' under ``out_dir/<anno_k>``)."""
    source = "write_official_tables"
    paths = {}
    for name, part in result.annotators.items():
        paths.update(_table_paths(part, confined_path(out_dir, name, source=source)))
    paths[id(result)] = (
        confined_path(out_dir, f"global_results-{result.split}.csv", source=source),
        confined_path(out_dir, f"per-sequence_results-{result.split}.csv", source=source),
    )
    return paths


def _write_tables(
    result: DAVISFolderResult, targets: dict[int, tuple[Path, Path]], float_format: str
) -> list[Path]:
    paths = []
    for part in result.annotators.values():
        paths += _write_tables(part, targets, float_format)
    means = result.global_means()
    global_text = _csv(GLOBAL_COLUMNS, [tuple(means[c] for c in GLOBAL_COLUMNS)], float_format)
    sequence_text = _csv(PER_SEQUENCE_COLUMNS, result.per_sequence(), float_format)
    global_path, sequence_path = targets[id(result)]
    paths.append(atomic_write_text(global_path, global_text))
    paths.append(atomic_write_text(sequence_path, sequence_text))
    return paths


def read_official_tables(
    folder: str | os.PathLike, split: str = "val"
) -> tuple[dict[str, float], list[tuple[str, float, float]]]:
    """Read the tables the official code (or :func:`write_official_tables`) wrote.

    Args:
        folder: The folder holding ``global_results-<split>.csv`` and
            ``per-sequence_results-<split>.csv``.
        split: The split in the file names.

    Returns:
        ``({column: value}, [(sequence, J-Mean, F-Mean), ...])``; empty cells read as NaN.

    Raises:
        FileNotFoundError: a table is missing.
        ValueError: a table whose columns are not the official ones.
    """
    folder = Path(folder)
    tables = []
    for name, columns in (
        (f"global_results-{split}.csv", GLOBAL_COLUMNS),
        (f"per-sequence_results-{split}.csv", PER_SEQUENCE_COLUMNS),
    ):
        path = folder / name
        if not path.is_file():
            raise FileNotFoundError(f"official table not found: {path}")
        rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"))))
        if not rows or tuple(rows[0]) != columns:
            raise ValueError(
                f"{path} must have the official columns {list(columns)}, got "
                f"{rows[0] if rows else 'an empty file'}"
            )
        tables.append(rows[1:])

    def number(cell: str) -> float:
        return float(cell) if cell else math.nan

    global_rows, sequence_rows = tables
    if len(global_rows) != 1 or len(global_rows[0]) != len(GLOBAL_COLUMNS):
        raise ValueError(
            f"{folder / f'global_results-{split}.csv'} must have one row of "
            f"{len(GLOBAL_COLUMNS)} values"
        )
    for line, row in enumerate(sequence_rows, 2):
        if len(row) != len(PER_SEQUENCE_COLUMNS):
            raise ValueError(
                f"{folder / f'per-sequence_results-{split}.csv'}: row {line} must have "
                f"{len(PER_SEQUENCE_COLUMNS)} cells, got {row}"
            )
    means = {column: number(cell) for column, cell in zip(GLOBAL_COLUMNS, global_rows[0])}
    per_sequence = [(row[0], number(row[1]), number(row[2])) for row in sequence_rows]
    return means, per_sequence
