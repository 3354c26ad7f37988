"""The ``rvos`` command line on jsonargparse: help, dotted overrides, recipes, errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rvoslib.cli import SUBCOMMANDS, main

CLI = Path(__file__).parents[1] / "rvoslib" / "cli"


def _printed(capsys, *argv: str) -> dict:
    assert main(["train", *argv, "--print-config"]) == 0
    return yaml.safe_load(capsys.readouterr().out)


def test_train_help_shows_what_runs(capsys) -> None:
    assert main(["train", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())  # line breaks depend on the terminal
    assert "--preset PRESET" in text and "default: tiny-motion" in text
    assert "--epochs EPOCHS" in text and "(type: int, default: 11)" in text
    assert "(type: int, default: 16)" in text  # --batch-size of the quickstart recipe
    assert '``{"temporal": {"name":' in text  # help texts are intact (colons, backticks)
    assert main(["train", "--config", "vos_quickstart", "--help"]) == 0
    assert "default: s2s-tiny" in capsys.readouterr().out


def test_every_subcommand_option_has_help() -> None:
    import importlib

    for name, module_name in SUBCOMMANDS.items():
        parser = importlib.import_module(module_name).command_line([]).parser
        for action in parser._actions:
            if action.option_strings:
                assert action.help and action.help.strip(), (name, action.option_strings)


def test_dotted_overrides_reach_the_printed_recipe(capsys) -> None:
    printed = _printed(capsys, "--model.temporal.name", "identity", "--trainer.lr", "0.00123")
    assert printed["model"]["overrides"] == {"temporal": {"name": "identity"}}
    assert printed["trainer"]["lr"] == 0.00123
    printed = _printed(
        capsys, "--model.fusion.num_heads=2", "--lr", "1e-3", "--data.attributes", "[color]"
    )
    assert printed["model"]["overrides"] == {"fusion": {"num_heads": 2}}
    assert printed["trainer"]["lr"] == 0.001 and printed["data"]["attributes"] == ["color"]


def test_flat_option_forms(capsys) -> None:
    printed = _printed(
        capsys, "--attributes", "color", "shape", "--max-time", "none", "--no-progress",
        "--shuffle-text", "--betas", "0.8", "0.99", "--out", "runs/x", "--trainer.fast", "false",
    )  # fmt: skip
    assert printed["data"]["attributes"] == ["color", "shape"]
    assert printed["trainer"]["max_time"] is None and printed["trainer"]["progress"] is False
    assert printed["data"]["shuffle_text"] is True and printed["trainer"]["betas"] == [0.8, 0.99]
    assert printed["trainer"]["output_dir"] == "runs/x" and printed["trainer"]["fast"] is False
    printed = _printed(capsys, "--overrides", '{"temporal": {"name": "identity"}}')
    assert printed["model"]["overrides"] == {"temporal": {"name": "identity"}}


def test_print_config_reads_back(tmp_path, capsys) -> None:
    argv = ["--model.temporal.name", "identity", "--lr", "0.00123", "--attributes", "color"]
    first = _printed(capsys, *argv)
    path = tmp_path / "printed.yaml"
    path.write_text(yaml.safe_dump(first, sort_keys=False))
    assert _printed(capsys, "--config", str(path)) == first


def test_unknown_options_list_the_valid_ones(capsys) -> None:
    assert main(["train", "--lrr", "1"]) == 2
    err = capsys.readouterr().err
    assert "unknown option --lrr (did you mean --lr or --lr-drops?); valid options: " in err
    assert "--batch-size" in err and "--no-progress" not in err
    assert main(["train", "--trainer.lrr", "1"]) == 2
    err = capsys.readouterr().err
    assert "--trainer.lrr: trainer has no field 'lrr'; valid trainer fields: epochs," in err
    assert main(["train", "--model.temporall.name", "identity", "--print-config"]) == 2
    err = capsys.readouterr().err
    assert "['temporall']" in err and "valid fields:" in err and "'temporal'" in err
    assert main(["train", "--epochs", "abc"]) == 2
    assert "--epochs / --trainer.epochs: expected int, got abc" in capsys.readouterr().err
    assert main(["train", "--no-progress", "yes"]) == 2
    assert "--no-progress takes no value, got 'yes'" in capsys.readouterr().err
    assert main(["--bogus", "train"]) == 2
    assert "unknown option --bogus" in capsys.readouterr().err


def test_a_recipe_trains_from_a_saved_config_json(tmp_path, capsys) -> None:
    from rvoslib import create_model

    saved = tmp_path / "saved"
    create_model("tiny", temporal={"name": "identity"}).save_pretrained(saved)
    config = json.loads((saved / "config.json").read_text())
    config["text_encoder"]["tokenizer"] = "hash"  # null: the files saved beside config.json
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "model": config,  # the config.json pasted into the model section
                "data": {"size": 32, "num_frames": 2, "train_videos": 4, "val_videos": 1,
                         "val_frames": 2},
                "trainer": {"epochs": 1, "batch_size": 4, "progress": False, "device": "cpu",
                            "tensorboard": False},
                "run": {"overlays": 0},
            }
        )
    )  # fmt: skip
    printed = _printed(capsys, "--config", str(recipe))
    assert printed["model"]["preset"] is None
    assert printed["model"]["config"]["architecture"] == config["architecture"]
    out = tmp_path / "out"
    assert main(["train", "--config", str(recipe), "--out", str(out)]) == 0
    capsys.readouterr()
    trained = json.loads((out / "best" / "config.json").read_text())
    assert trained["temporal"]["name"] == "identity"
    path = str(saved / "config.json")
    by_path = _printed(capsys, "--model.config", path, "--model.fusion.num_heads", "2")
    assert by_path["model"]["preset"] is None and by_path["model"]["config"] == path
    from rvoslib.recipes import model_config, recipe_from_dict

    built = model_config(recipe_from_dict(by_path).model)
    assert built.temporal["name"] == "identity" and built.fusion["num_heads"] == 2
    assert built.text_encoder["tokenizer"] == str(saved)
    out = tmp_path / "from_folder"
    assert main(["train", "--config", str(recipe), "--model.config", str(saved),
                 "--out", str(out)]) == 0  # fmt: skip


def test_model_section_errors(tmp_path, capsys) -> None:
    from rvoslib.recipes import ModelRecipe, model_config

    with pytest.raises(ValueError, match="needs a preset or a config"):
        model_config(ModelRecipe(preset=None))
    with pytest.raises(ValueError, match="has no 'architecture' key"):
        model_config(ModelRecipe(preset=None, config={"backbone": {}}))
    null = {"architecture": "fusion", "text_encoder": {"tokenizer": None}}
    with pytest.raises(ValueError, match="text_encoder.tokenizer is null: save_pretrained wrote"):
        model_config(ModelRecipe(preset=None, config=null))
    with pytest.raises(FileNotFoundError, match="no such config.json or model folder"):
        model_config(ModelRecipe(preset=None, config=str(tmp_path / "nowhere")))
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: {architecture: fusion, config: {architecture: fusion}}\n")
    assert main(["train", "--config", str(recipe), "--print-config"]) == 2
    assert "both an inline architecture config and config:" in capsys.readouterr().err


def test_no_argparse_and_no_task_branches_in_the_cli() -> None:
    for path in CLI.glob("*.py"):
        text = path.read_text()
        assert not re.search(r"\bimport argparse|\bfrom argparse|(?<!json)argparse\.", text)
        assert ".task ==" not in text and ".task !=" not in text, path.name


def test_rvos_help_imports_no_subcommand() -> None:
    code = (
        "import sys; from rvoslib.cli import main; main(['--help']); "
        "print(sorted(m for m in sys.modules if m.startswith('rvoslib.cli.')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "train     train a model" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == "['rvoslib.cli.options']"


def test_version_and_import(capsys) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("rvoslib ")
    assert main(["--import", "json", "train", "--print-config"]) == 0
    assert main([]) == 2  # no command: the usage
    assert "commands (rvos COMMAND --help" in capsys.readouterr().err
