"""Plain-text records of a run: the per-epoch log line, metrics.csv, curves.png, the summary
table of ``rvos train`` (and ``--json``)."""

from __future__ import annotations

import csv
import json
import logging

import pytest

from rvoslib.cli import main
from rvoslib.training import logs

SMALL = [
    "--train-videos", "4", "--val-videos", "1", "--val-frames", "2", "--num-frames", "2",
    "--size", "32", "--batch-size", "4", "--epochs", "2", "--no-progress", "--overlays", "0",
    "--device", "cpu",
]  # fmt: skip


def test_epoch_line_counts_epochs_from_one_and_skips_missing_values() -> None:
    record = {"epoch": 1, "train_loss": 0.25, "J": None, "JF": 0.5, "lr": 2e-5, "epoch_time": 3}
    assert logs.epoch_line(record, epochs=4) == (
        "epoch 2/4: train_loss 0.2500  JF 0.5000  lr 2.00e-05  (3.0 s)"
    )


def test_summary_table_aligns_scalars_and_leaves_out_containers() -> None:
    table = logs.summary_table({"JF": 0.5, "best_epoch": 3, "stopped_by": None, "x": [1]})
    assert table.splitlines() == [
        "metric      value",
        "----------  ------",
        "JF          0.5000",
        "best_epoch  3",
        "stopped_by  -",
    ]


def test_write_csv_takes_the_union_of_columns(tmp_path) -> None:
    history = [{"epoch": 0, "train_loss": 1.0}, {"epoch": 1, "train_loss": 0.5, "JF": None}]
    path = logs.write_csv(history, tmp_path / "m.csv")
    rows = list(csv.DictReader(path.open()))
    assert rows == [
        {"epoch": "0", "train_loss": "1.0", "JF": ""},
        {"epoch": "1", "train_loss": "0.5", "JF": ""},
    ]


def test_write_curves_writes_a_png_and_skips_an_empty_history(tmp_path) -> None:
    pytest.importorskip("matplotlib")
    path = logs.write_curves([{"epoch": 0, "train_loss": 1.0}], tmp_path / "c.png")
    assert path is not None and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert logs.write_curves([], tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()


def test_enable_console_logging_replaces_its_own_handler() -> None:
    logger = logging.getLogger("rvoslib")
    before = list(logger.handlers)
    try:
        first = logs.enable_console_logging()
        second = logs.enable_console_logging()
        assert second in logger.handlers and first not in logger.handlers
    finally:
        for handler in list(logger.handlers):
            if handler not in before:
                logger.removeHandler(handler)


@pytest.fixture
def console_handlers():
    """Remove the console handler ``rvos train`` adds to the ``rvoslib`` logger."""
    yield
    logging.getLogger("rvoslib").handlers.clear()


def test_rvos_train_logs_each_epoch_writes_csv_and_curves_and_ends_with_a_table(
    tmp_path, capsys, console_handlers
) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "out"
    assert main(["train", *SMALL, "--out", str(out)]) == 0
    captured = capsys.readouterr()
    epoch_lines = [line for line in captured.err.splitlines() if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in epoch_lines] == ["epoch 1/2", "epoch 2/2"]
    assert "JF" in epoch_lines[-1]
    table = captured.out.strip().splitlines()
    assert table[0].split() == ["metric", "value"] and any(r.startswith("JF ") for r in table)
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == ["0", "1"]
    assert float(rows[1]["JF"]) == pytest.approx(history[1]["JF"])
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_rvos_train_json_ends_with_one_json_line(tmp_path, capsys, console_handlers) -> None:
    out = tmp_path / "out"
    assert main(["train", *SMALL, "--epochs", "1", "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["epochs"] == 1 and 0.0 <= summary["JF"] <= 1.0


def test_tensorboard_event_files_are_written_when_installed(tmp_path, console_handlers) -> None:
    pytest.importorskip("tensorboard")
    out = tmp_path / "out"
    assert main(["train", *SMALL, "--epochs", "1", "--out", str(out), "--json"]) == 0
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
