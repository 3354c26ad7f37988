"""``rvos train`` and ``rvos eval``: a small end-to-end run, resume, YAML config, errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from rvoslib.cli import main

SMALL = [
    "--train-videos", "8", "--val-videos", "2", "--val-frames", "2", "--num-frames", "2",
    "--size", "32", "--batch-size", "4", "--epochs", "1", "--no-progress", "--overlays", "1",
    "--device", "cpu",
]  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "out"
    assert main(["train", *SMALL, "--out", str(out)]) == 0
    return out


def test_train_writes_the_run(trained, capsys) -> None:
    for name in ("best", "last", "history.jsonl", "metrics.json", "overlays"):
        assert (trained / name).exists(), name
    metrics = json.loads((trained / "metrics.json").read_text())
    assert {"J", "F", "JF", "world_size"} <= set(metrics)
    assert metrics["world_size"] == 1 and 0.0 <= metrics["JF"] <= 1.0
    assert list((trained / "overlays").glob("*.png"))
    assert (trained / "best" / "model.safetensors").is_file()


def test_existing_run_is_refused_without_resume_or_overwrite(trained, capsys) -> None:
    assert main(["train", *SMALL, "--out", str(trained)]) == 2
    assert "already holds a run" in capsys.readouterr().err


def test_resume_continues_the_run(trained) -> None:
    assert main(["train", *SMALL, "--out", str(trained), "--resume", "--epochs", "2"]) == 0
    lines = (trained / "history.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [0, 1]


def test_resume_refuses_other_settings(trained, capsys) -> None:
    assert main(["train", *SMALL, "--out", str(trained), "--resume", "--lr", "0.1"]) == 2
    assert "lr: 0.002 (checkpoint) != 0.1 (now)" in capsys.readouterr().err


def test_yaml_recipe(tmp_path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(
        "model: {preset: tiny}\n"
        "data: {size: 32, num_frames: 2, train_videos: 4, val_videos: 1, val_frames: 2}\n"
        "trainer: {epochs: 1, batch_size: 4, progress: false, device: cpu}\n"
        "run: {overlays: 0}\n"
    )
    out = tmp_path / "out"
    assert main(["train", "--config", str(config), "--out", str(out)]) == 0
    assert json.loads((out / "metrics.json").read_text())["epochs"] == 1
    saved = (out / "recipe.yaml").read_text()
    assert "batch_size: 4" in saved and "train_videos: 4" in saved


def test_yaml_unknown_key(tmp_path, capsys) -> None:
    config = tmp_path / "run.yaml"
    config.write_text("trainer: {epochz: 1}\n")
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "o")]) == 2
    assert "unknown trainer fields ['epochz']" in capsys.readouterr().err
    config.write_text("trainer: [1, 2\n")
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "o")]) == 2
    assert f"{str(config)!r} is not valid YAML" in capsys.readouterr().err


def test_values_come_from_defaults_then_recipe_then_flags(capsys) -> None:
    assert main(["train", "--print-config", "--lr", "0.01"]) == 0
    printed = capsys.readouterr().out
    assert "lr: 0.01" in printed  # the flag
    assert "batch_size: 16" in printed  # the quickstart recipe
    assert "betas:\n  - 0.9" in printed  # the TrainerConfig default
    assert main(["train", "--print-config", "--config", "none"]) == 0
    assert "batch_size: 2" in capsys.readouterr().out  # the dataclass default


def test_cli_options_are_the_config_fields_with_the_recipes_defaults() -> None:
    import dataclasses

    from rvoslib.cli.train import command_line
    from rvoslib.recipes import SECTIONS, Recipe, load_recipe

    for argv, recipe in (([], load_recipe("quickstart")), (["--config", "none"], Recipe())):
        actions = {a.dest: a for a in command_line(argv).parser._actions}
        values = recipe.to_dict()
        for section, cls in SECTIONS.items():
            for item in dataclasses.fields(cls):
                action = actions[f"{section}.{item.name}"]
                assert f"--{section}.{item.name}" in action.option_strings
                if (section, item.name) != ("model", "config"):  # --config is the recipe's
                    assert "--" + item.name.replace("_", "-") in action.option_strings
                assert action.default == values[section][item.name], item.name
                assert action.help, item.name


def test_unknown_preset_lists_valid_ones(tmp_path, capsys) -> None:
    assert main(["train", "--preset", "huge", "--out", str(tmp_path / "o")]) == 2
    from rvoslib import list_presets

    valid = ", ".join(list_presets())
    assert f"unknown preset 'huge'; valid presets: {valid}" in capsys.readouterr().err


def test_unknown_dataset_lists_valid_ones(capsys) -> None:
    assert main(["train", "--dataset", "kinetics"]) == 2
    assert "invalid choice: 'kinetics' (choose from 'a2d', 'davis'" in capsys.readouterr().err


def test_missing_dataset_root(tmp_path, capsys) -> None:
    missing = tmp_path / "nowhere"
    assert (
        main(["train", "--dataset", "davis", "--root", str(missing), "--out", str(tmp_path / "o")])
        == 2
    )
    assert str(missing) in capsys.readouterr().err


def test_python_m_rvoslib_help() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "rvoslib", "train", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0 and "--shuffle-text" in result.stdout


def test_synthetic_training_videos_are_cached_while_small() -> None:
    from rvoslib.data import DataConfig, build_datasets
    from rvoslib.recipes import load_recipe

    train, val = build_datasets(load_recipe("quickstart").data)
    assert train.cache and not val.cache  # 4096 videos x 4 frames x 64 x 64: 268 MB
    assert train.attributes == val.attributes == ("color", "shape", "motion", "position")
    motion, _ = build_datasets(DataConfig(attributes=["color", "motion"], train_videos=8))
    assert motion.attributes == ("color", "motion")
    huge, _ = build_datasets(DataConfig(train_videos=100000, size=256))
    assert not huge.cache


def test_unknown_attribute_lists_valid_ones(capsys) -> None:
    assert main(["train", "--attributes", "color", "size", "--print-config"]) == 2
    assert "unknown attributes ['size']; valid attributes:" in capsys.readouterr().err
