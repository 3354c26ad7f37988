"""``rvos eval``: protocols, the official layout at the frames' size, scoring a folder."""

from __future__ import annotations

import json
import re

import pytest
import torch
from _davis_mini import OFFICIAL_SEMI
from PIL import Image

from rvoslib import create_model
from rvoslib.cli import main


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("ckpt") / "tiny"
    create_model("tiny").save_pretrained(folder)
    return folder


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.strip().splitlines() if line.startswith("{")]


def test_eval_on_synthetic_writes_masks_and_tables(checkpoint, tmp_path, capsys) -> None:
    code = main(
        ["eval", "--checkpoint", str(checkpoint), "--dataset", "synthetic", "--val-videos", "2",
         "--json", "--val-frames", "2", "--size", "32", "--out", str(tmp_path), "--device", "cpu"]
    )  # fmt: skip
    assert code == 0
    rows = _json_lines(capsys.readouterr().out)
    assert rows[0] == {"protocol": "all"} and rows[-1]["protocol"] == "all"
    assert {"J", "F", "JF"} <= set(rows[-1])
    assert (tmp_path / "per_sequence.csv").is_file()
    assert len(list(tmp_path.rglob("*.png"))) == 4


def test_predictions_are_written_and_scored_at_the_frames_size(
    checkpoint, davis_mini, tmp_path, capsys
) -> None:
    code = main(
        ["eval", "--checkpoint", str(checkpoint), "--root", str(davis_mini), "--size", "64",
         "--json", "--protocol", "all", "--out", str(tmp_path), "--device", "cpu"]
    )  # fmt: skip
    assert code == 0
    rows = _json_lines(capsys.readouterr().out)
    assert len(rows) == 6  # the protocol, 4 (video, expression) rows, the summary
    png = next((tmp_path / "blackswan").rglob("00000.png"))
    assert Image.open(png).size == (854, 480)  # not the padded 64 x 128 model input


def test_refer_davis_is_the_default_and_writes_the_official_layout(
    checkpoint, davis_mini, tmp_path, capsys
) -> None:
    code = main(
        ["eval", "--checkpoint", str(checkpoint), "--root", str(davis_mini), "--size", "64",
         "--json", "--out", str(tmp_path), "--device", "cpu"]
    )  # fmt: skip
    assert code == 0
    rows = _json_lines(capsys.readouterr().out)
    assert rows[0] == {"protocol": "refer-davis"} and rows[-1]["protocol"] == "refer-davis"
    image = Image.open(tmp_path / "anno_0" / "blackswan" / "00000.png")
    assert image.mode == "P" and image.size == (854, 480)
    for name in ("global_results-val.csv", "per-sequence_results-val.csv", "summary.json"):
        assert (tmp_path / name).is_file(), name


def test_scoring_the_osvos_folder_reproduces_the_official_numbers(
    davis_mini, tmp_path, capsys
) -> None:
    predictions = davis_mini / "predictions" / "osvos"
    code = main(
        ["eval", "--json", "--predictions", str(predictions), "--root", str(davis_mini),
         "--protocol", "semi-supervised", "--out", str(tmp_path)]
    )  # fmt: skip
    assert code == 0
    rows = _json_lines(capsys.readouterr().out)
    scores = {row["sequence"].rsplit("_", 1)[0]: (row["J"], row["F"]) for row in rows[:-1]}
    for sequence, (j_value, f_value) in OFFICIAL_SEMI.items():
        assert scores[sequence][0] == pytest.approx(j_value, abs=1e-9)
        assert scores[sequence][1] == pytest.approx(f_value, abs=1e-9)
    assert (tmp_path / "per-sequence_results-val.csv").is_file()


def test_eval_errors_name_the_argument(checkpoint, tmp_path, capsys) -> None:
    argv = ["eval", "--checkpoint", str(checkpoint), "--dataset", "synthetic"]
    assert main([*argv, "--protocol", "refer-davis"]) == 2
    assert "--protocol refer-davis needs --dataset davis --task rvos" in capsys.readouterr().err
    assert main(["eval", "--checkpoint", str(checkpoint)]) == 2
    assert "root is required for dataset 'davis' (--root)" in capsys.readouterr().err
    missing = tmp_path / "nowhere"
    assert main(["eval", "--predictions", str(missing), "--root", str(tmp_path)]) == 2
    assert f"predictions folder {str(missing)!r} does not exist" in capsys.readouterr().err
    assert main([*argv, "--threshold", "1.5"]) == 2
    assert "--threshold must be in (0, 1), got 1.5" in capsys.readouterr().err
    assert main([*argv, "--attributes", "size"]) == 2
    assert "unknown attributes ['size']; valid attributes:" in capsys.readouterr().err
    assert main([*argv, "--val-video", "3"]) == 2
    err = capsys.readouterr().err
    assert "unknown option --val-video (did you mean --val-videos" in err
    assert "valid options: " in err and "--num-frames" in err
    assert main(["eval", "--dataset", "synthetic"]) == 2
    assert "one of the arguments --checkpoint --predictions is required" in capsys.readouterr().err
    assert main(["eval", "--predictions", str(tmp_path), "--dataset", "synthetic"]) == 2
    assert "--predictions scores a DAVIS-layout folder" in capsys.readouterr().err


def test_old_option_names_warn_and_build_the_same_data(checkpoint, capsys) -> None:
    new = ["--dataset", "synthetic", "--val-videos", "2", "--val-frames", "2", "--size", "32"]
    old = ["--data", "synthetic", "--videos", "2", "--frames", "2", "--size", "32"]
    rows = []
    for options in (new, old):
        assert (
            main(["eval", "--json", "--checkpoint", str(checkpoint), *options, "--device", "cpu"])
            == 0
        )
        captured = capsys.readouterr()
        rows.append(_json_lines(captured.out))
        if options is old:
            assert "rvos eval: warning: --data is deprecated; use --dataset" in captured.err
            assert "--videos is deprecated; use --val-videos" in captured.err
            assert "--frames is deprecated; use --val-frames and --num-frames" in captured.err
        else:
            assert "deprecated" not in captured.err
    assert rows[0] == rows[1]
    from rvoslib.cli.evaluate import command_line

    with pytest.warns(FutureWarning, match="--split is deprecated; use --val-split"):
        args = command_line().parse(["--checkpoint", "c", "--split", "test"])
    assert args.data.val_split == "test"


def test_eval_help_has_help_for_every_option(capsys) -> None:
    from rvoslib.cli.evaluate import command_line

    actions = [a for a in command_line().parser._actions if a.option_strings]
    names = {name for action in actions for name in action.option_strings}
    for name in ("--dataset", "--num-frames", "--val-videos", "--root", "--size", "--seed"):
        assert name in names, name
    for action in actions:
        assert action.help and action.help.strip(), action.option_strings
    assert main(["eval", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())  # line breaks depend on the terminal
    assert "--val-videos VAL_VIDEOS" in text and "(type: int, default: 32)" in text
    assert "--data, --split, --videos and --frames still work and warn" in text


def test_by_kind_reports_every_kind_of_expression(checkpoint, capsys) -> None:
    code = main(
        ["eval", "--checkpoint", str(checkpoint), "--dataset", "synthetic", "--val-videos", "12",
         "--json", "--val-frames", "2", "--size", "32", "--by-kind", "--device", "cpu"]
    )  # fmt: skip
    assert code == 0
    summary = _json_lines(capsys.readouterr().out)[-1]
    kinds = summary["by_kind"]
    assert sum(row["count"] for row in kinds.values()) == 12
    assert all(0.0 <= row["J"] <= 1.0 for row in kinds.values())
    assert main(["eval", "--checkpoint", str(checkpoint), "--root", ".", "--by-kind"]) == 2
    assert "--by-kind needs --dataset synthetic" in capsys.readouterr().err


def test_a2d_and_jhmdb_protocols_from_the_cli(checkpoint, tmp_path, capsys) -> None:
    pytest.importorskip("h5py")
    from _a2d_fixtures import make_a2d, make_jhmdb

    a2d, jhmdb = make_a2d(tmp_path / "a2d"), make_jhmdb(tmp_path / "jhmdb")
    for data, root in (("a2d", a2d), ("jhmdb", jhmdb)):
        argv = ["eval", "--json", "--checkpoint", str(checkpoint), "--dataset", data,
                "--root", str(root)]  # fmt: skip
        assert main([*argv, "--size", "32", "--num-frames", "2", "--device", "cpu"]) == 0
        out = capsys.readouterr().out
        summary = _json_lines(out)[-1]
        assert summary["data"] == data
        assert {"mAP_all_queries", "mAP_top_query", "P@0.5", "overall_iou", "mean_iou"} <= set(
            summary
        )
        assert main([*argv[:1], *argv[2:], "--size", "32", "--num-frames", "2"]) == 0
        out = capsys.readouterr().out  # without --json: the protocol's report and the table
        assert "mAP (all queries)" in out and "mAP (top query)" in out
        metrics = dict(_table(out, "metric  value"))
        assert float(metrics["mAP_all_queries"]) == pytest.approx(
            summary["mAP_all_queries"], abs=5e-5
        )


def _cells(line: str) -> list[str]:
    return re.split(r"\s{2,}", line.strip())


def _table(text: str, header: str) -> list[list[str]]:
    """The rows of the table whose titles begin with those of ``header`` (cells are split on
    two or more spaces)."""
    titles = _cells(header)
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if _cells(line)[: len(titles)] == titles)
    rows = []
    for line in lines[start + 2 :]:
        if not line.strip():
            break
        rows.append(_cells(line))
    return rows


def test_eval_prints_tables_with_the_numbers_of_the_json_lines(checkpoint, capsys) -> None:
    argv = ["eval", "--checkpoint", str(checkpoint), "--dataset", "synthetic", "--val-videos",
            "6", "--val-frames", "2", "--size", "32", "--by-kind", "--device", "cpu"]  # fmt: skip
    assert main([*argv, "--json"]) == 0
    lines = _json_lines(capsys.readouterr().out)
    rows, summary = lines[1:-1], lines[-1]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert not any(line.startswith("{") for line in out.splitlines())
    assert out.splitlines()[0] == "protocol: all"
    table = _table(out, "video  expression  frames  J")
    assert len(table) == len(rows) == 6
    for cells, row in zip(table, rows):
        assert cells[:3] == [row["video_id"], str(row["key"]), str(row["num_frames"])]
        assert [float(c) for c in cells[3:6]] == pytest.approx(
            [row["J"], row["F"], row["JF"]], abs=5e-5
        )
    metrics = dict(_table(out, "metric  value"))
    assert float(metrics["JF"]) == pytest.approx(summary["JF"], abs=5e-5)
    assert metrics["protocol"] == "all" and int(metrics["num_sequences"]) == 6
    kinds = {cells[0]: cells for cells in _table(out, "kind  count  J  F  J&F")}
    assert set(kinds) == set(summary["by_kind"])
    for kind, cells in kinds.items():
        assert int(cells[1]) == summary["by_kind"][kind]["count"]
        assert float(cells[4]) == pytest.approx(summary["by_kind"][kind]["JF"], abs=5e-5)


def test_scoring_a_folder_prints_a_table_per_sequence(davis_mini, capsys) -> None:
    argv = ["eval", "--predictions", str(davis_mini / "predictions" / "osvos"),
            "--root", str(davis_mini), "--protocol", "semi-supervised"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    scores = {
        name.rsplit("_", 1)[0]: (float(j), float(f)) for name, j, f in _table(out, "sequence")
    }
    assert set(scores) == set(OFFICIAL_SEMI)
    for name, official in OFFICIAL_SEMI.items():
        assert scores[name] == pytest.approx(official, abs=5e-5)  # the official numbers, rounded
    metrics = dict(_table(out, "metric  value"))
    mean_jf = sum(j + f for j, f in OFFICIAL_SEMI.values()) / (2 * len(OFFICIAL_SEMI))
    assert float(metrics["JF"]) == pytest.approx(mean_jf, abs=5e-5)
