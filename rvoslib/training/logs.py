"""Plain-text records of a training run: a ``logging`` line per epoch, ``metrics.csv`` and
``curves.png`` in the run folder, and a readable end-of-run summary table.

The :class:`~rvoslib.training.Trainer` calls these itself (rank 0): the per-epoch line goes to
the ``rvoslib.train`` logger (:func:`logging.getLogger`), so a program decides where it goes;
``rvos train`` prints it on stderr (:func:`enable_console_logging`).

Example:
    >>> record = {"epoch": 0, "train_loss": 0.51234, "JF": 0.75, "epoch_time": 12.0}
    >>> epoch_line(record, epochs=3)
    'epoch 1/3: train_loss 0.5123  JF 0.7500  (12.0 s)'
    >>> print(summary_table({"J": 0.7, "F": 0.8, "JF": 0.75, "epochs": 3}))
    metric  value
    ------  ------
    J       0.7000
    F       0.8000
    JF      0.7500
    epochs  3
"""

from __future__ import annotations

import csv
import io
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rvoslib._io import atomic_write_bytes, atomic_write_text
from rvoslib._table import format_table, format_value

__all__ = [
    "CSV_FILE",
    "CURVES_FILE",
    "LOGGER_NAME",
    "enable_console_logging",
    "epoch_line",
    "summary_table",
    "write_csv",
    "write_curves",
]

#: The logger of training runs (``logging.getLogger(LOGGER_NAME)``).
LOGGER_NAME = "rvoslib.train"
#: One row per epoch, the columns of the history.
CSV_FILE = "metrics.csv"
#: Losses, J/F and the learning rate per epoch (needs matplotlib).
CURVES_FILE = "curves.png"

#: The record's values shown on the per-epoch line, in this order (those present).
_LINE_KEYS = ("train_loss", "train_iou", "val_loss", "J", "F", "JF", "lr")


def epoch_line(record: Mapping[str, Any], epochs: int) -> str:
    """One line for an epoch's record: ``epoch k/N: key value ...  (seconds)``.

    Args:
        record: The epoch's history record (``epoch`` counts from 0).
        epochs: The run's number of epochs.
    """
    parts = [
        f"{key} {format_value(record[key])}" for key in _LINE_KEYS if record.get(key) is not None
    ]
    seconds = record.get("epoch_time")
    tail = f"  ({seconds:.1f} s)" if isinstance(seconds, (int, float)) else ""
    return f"epoch {int(record['epoch']) + 1}/{epochs}: " + "  ".join(parts) + tail


def summary_table(values: Mapping[str, Any]) -> str:
    """A two-column ``metric  value`` table of the scalar entries of ``values`` (in order;
    lists and dicts are left out, ``None`` is shown as ``-``)."""
    rows = [
        {"metric": str(key), "value": value}
        for key, value in values.items()
        if value is None or isinstance(value, (int, float, str))
    ]
    return format_table(rows, ["metric", "value"])


def write_csv(history: Sequence[Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """Write the history as CSV (atomically): one row per epoch, the union of the records'
    keys as columns (first-seen order), empty cells for missing or ``None`` values."""
    columns: list[str] = []
    for record in history:
        columns += [key for key in record if key not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for record in history:
        writer.writerow({key: "" if record.get(key) is None else record[key] for key in columns})
    return atomic_write_text(path, buffer.getvalue())


def write_curves(history: Sequence[Mapping[str, Any]], path: str | os.PathLike) -> Path | None:
    """Plot the history (:func:`rvoslib.viz.plot_history`) into a PNG, atomically.

    Returns:
        ``path``, or ``None`` when matplotlib is not installed or the history is empty.
    """
    try:
        from rvoslib.viz import plot_history

        figure = plot_history(history)
    except (ImportError, ValueError):
        return None
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return atomic_write_bytes(path, buffer.getvalue())


def enable_console_logging(level: int = logging.INFO) -> logging.Handler:
    """Send the ``rvoslib`` loggers' records to stderr as bare lines (what ``rvos`` does).

    Calling it again replaces the handler it added before; returns the handler.
    """
    logger = logging.getLogger("rvoslib")
    for handler in list(logger.handlers):
        if getattr(handler, "_rvoslib_console", False):
            logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler._rvoslib_console = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(level)
    return handler
