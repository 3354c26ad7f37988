"""A run folder loses nothing and runs nothing: training states are read without running
pickled code, ``--overwrite`` is a transaction (``--restore-previous``), a full disk keeps the
previous checkpoint (issue 24)."""

from __future__ import annotations

import ast
import errno
import json
import os
import random
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from rvoslib import create_model
from rvoslib.cli import main
from rvoslib.data import SyntheticRVOSDataset
from rvoslib.training import Trainer, TrainerConfig, load_training_state
from rvoslib.training import checkpoint as checkpoint_module
from rvoslib.training.checkpoint import get_rng_state, save_checkpoint, set_rng_state
from rvoslib.training.run_folder import LOCK_FILE, PREVIOUS, RunFolder

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------ helpers
def _snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != LOCK_FILE
    }


def _fake_run(out: Path, tag: str) -> dict[str, bytes]:
    """A finished run's files (a complete ``last/``); returns their snapshot."""
    for sub in ("last", "best"):
        (out / sub).mkdir(parents=True)
        for name in ("config.json", "model.safetensors", "training_state.pt"):
            (out / sub / name).write_text(f"{tag} {sub} {name}")
    for name in ("history.jsonl", "metrics.json", "recipe.yaml"):
        (out / name).write_text(f"{tag} {name}")
    return _snapshot(out)


def _die(folder: RunFolder) -> None:
    """What SIGKILL leaves: no ``__exit__``, a lock whose process no longer runs."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    holder = {"pid": dead.pid, "host": socket.gethostname(), "started": 0}
    (folder.path / LOCK_FILE).write_text(json.dumps(holder))
    folder._locked = False


def _messages() -> tuple[list[str], object]:
    said: list[str] = []
    return said, said.append


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A one-epoch run of a tiny model (its ``last/`` checkpoint)."""
    out = tmp_path_factory.mktemp("trained")
    data = SyntheticRVOSDataset(num_videos=2, num_frames=2, size=32)
    config = TrainerConfig(epochs=1, batch_size=2, accumulation_steps=1, progress=False,
                           device="cpu", output_dir=str(out), tensorboard=False)  # fmt: skip
    torch.manual_seed(0)
    Trainer(create_model("tiny"), data, config=config).fit()
    return out


# ------------------------------------------------------------------------- no pickle runs
def test_a_training_state_is_plain_data_read_with_weights_only(trained) -> None:
    state = torch.load(trained / "last" / "training_state.pt", weights_only=True)
    assert isinstance(state["rng"]["numpy"][1], torch.Tensor)
    assert isinstance(state["rng"]["python"][1], list)
    assert load_training_state(trained / "last")["epoch"] == 1


def test_rng_states_survive_a_weights_only_round_trip(tmp_path) -> None:
    random.seed(3), np.random.seed(3), torch.manual_seed(3)
    np.random.standard_normal()  # numpy keeps a cached gaussian
    torch.save(get_rng_state(), tmp_path / "rng.pt")
    expected = (random.random(), np.random.standard_normal(3), torch.rand(3))
    set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    assert random.random() == expected[0]
    assert np.array_equal(np.random.standard_normal(3), expected[1])
    assert torch.equal(torch.rand(3), expected[2])


class _Payload:
    """Unpickling this runs ``os.mkdir(marker)``."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_a_training_state_carrying_a_payload_is_refused_unrun(trained, tmp_path) -> None:
    folder = tmp_path / "last"
    shutil.copytree(trained / "last", folder)
    state = torch.load(folder / "training_state.pt", weights_only=True)
    marker = tmp_path / "payload-ran"
    torch.save({**state, "history": [_Payload(marker)]}, folder / "training_state.pt")
    with pytest.raises(ValueError, match="is not a plain rvoslib training state") as error:
        load_training_state(folder)
    assert str(folder / "training_state.pt") in str(error.value)
    assert "posix.mkdir" in str(error.value) or "mkdir" in str(error.value)
    assert not marker.exists()
    with pytest.raises(ValueError, match="is not a plain rvoslib training state"):
        Trainer(create_model("tiny"), SyntheticRVOSDataset(num_videos=2, num_frames=2, size=32),
                config=TrainerConfig(epochs=1, batch_size=2, progress=False, device="cpu",
                                     accumulation_steps=1), resume=folder)  # fmt: skip
    assert not marker.exists()
    torch.load(folder / "training_state.pt", weights_only=False)  # the payload is real
    assert marker.is_dir()


def test_a_state_of_the_old_format_with_numpy_arrays_is_refused(trained, tmp_path) -> None:
    folder = tmp_path / "last"
    shutil.copytree(trained / "last", folder)
    state = torch.load(folder / "training_state.pt", weights_only=True)
    state["rng"]["numpy"] = np.random.get_state()  # format 2 stored numpy's tuple as is
    torch.save(state, folder / "training_state.pt")
    with pytest.raises(ValueError, match="training_state.pt' is not a plain rvoslib training"):
        load_training_state(folder)


def test_every_torch_load_in_rvoslib_is_weights_only() -> None:
    offenders = []
    for path in sorted((ROOT / "rvoslib").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and ast.unparse(node.func).endswith("torch.load"):
                safe = any(
                    k.arg == "weights_only" and ast.unparse(k.value) == "True"
                    for k in node.keywords
                )
                if not safe:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []


# ------------------------------------------------------------------ overwrite, transaction
def test_two_killed_overwrites_keep_the_original_run_and_restore_puts_it_back(
    tmp_path, capsys
) -> None:
    out = tmp_path / "run"
    original = _fake_run(out, "original")
    said, notify = _messages()
    first = RunFolder(out, overwrite=True, notify=notify).__enter__()
    assert _snapshot(out / PREVIOUS) == original  # complete and visible
    assert any(str(out / PREVIOUS) in m and "--restore-previous" in m for m in said)
    (out / "recipe.yaml").write_text("interrupted 1")
    (out / "tensorboard").mkdir()
    _die(first)
    said.clear()
    with pytest.warns(RuntimeWarning, match="removing the stale lock"):
        second = RunFolder(out, overwrite=True, notify=notify).__enter__()
    assert _snapshot(out / PREVIOUS) == original  # the ORIGINAL run, not the interrupted one
    assert any("interrupted --overwrite is kept in" in m and str(out / PREVIOUS) in m
               for m in said)  # fmt: skip
    assert any("recipe.yaml, tensorboard" in m for m in said)
    (out / "recipe.yaml").write_text("interrupted 2")
    _die(second)
    with pytest.warns(RuntimeWarning, match="removing the stale lock"):
        assert main(["train", "--out", str(out), "--restore-previous"]) == 0
    err = capsys.readouterr().err
    assert f"the previous run from {str(out / PREVIOUS)!r} is back in {str(out)!r}" in err
    assert "recipe.yaml" in err
    assert _snapshot(out) == original
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["best", "history.jsonl", "last", "metrics.json", "recipe.yaml"]
    )


def test_a_plain_run_on_an_interrupted_overwrite_is_refused(tmp_path) -> None:
    out = tmp_path / "run"
    _fake_run(out, "original")
    _die(RunFolder(out, overwrite=True, notify=lambda _: None).__enter__())
    with pytest.raises(ValueError, match="holds the run an interrupted --overwrite") as error:
        RunFolder(out).check()
    assert str(out / PREVIOUS) in str(error.value) and "--restore-previous" in str(error.value)


def test_a_kill_while_moving_aside_loses_no_file(tmp_path) -> None:
    out = tmp_path / "run"
    original = _fake_run(out, "original")
    moving = out / ".previous-run.moving"
    moving.mkdir()
    os.replace(out / "last", moving / "last")  # killed after the first move
    said, notify = _messages()
    with RunFolder(out, overwrite=True, notify=notify) as folder:
        assert _snapshot(folder.previous) == original
    assert _snapshot(out / PREVIOUS) == original  # no checkpoint: the previous run is kept
    assert any("the new run ended without a checkpoint" in m for m in said)
    assert any("kept in" in m and str(out / PREVIOUS) in m for m in said)


def test_a_failure_before_the_first_checkpoint_puts_the_run_back(tmp_path) -> None:
    out = tmp_path / "run"
    original = _fake_run(out, "original")
    said, notify = _messages()
    with pytest.raises(KeyboardInterrupt), RunFolder(out, overwrite=True, notify=notify):
        (out / "recipe.yaml").write_text("new")
        raise KeyboardInterrupt
    assert _snapshot(out) == original
    assert any("failed before its first checkpoint" in m and str(out / PREVIOUS) in m
               for m in said)  # fmt: skip


def test_the_previous_run_goes_only_after_a_complete_checkpoint(tmp_path) -> None:
    out = tmp_path / "run"
    _fake_run(out, "original")
    said, notify = _messages()
    with RunFolder(out, overwrite=True, notify=notify) as folder:
        (out / "last").mkdir()
        (out / "last" / "config.json").write_text("{}")
        folder.started()  # incomplete checkpoint: nothing deleted
        assert (out / PREVIOUS / "last").is_dir()
        new = _fake_run(tmp_path / "new", "new")
        shutil.rmtree(out / "last")
        shutil.copytree(tmp_path / "new" / "last", out / "last")
        folder.started()
        assert not (out / PREVIOUS).exists()
        assert not (out / ".previous-run.deleting").exists()
    assert _snapshot(out / "last") == {k[5:]: v for k, v in new.items() if k.startswith("last/")}
    assert any("wrote its first checkpoint" in m and str(out / PREVIOUS) in m for m in said)


def test_restore_previous_refusals(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    _fake_run(out, "original")
    with pytest.raises(FileNotFoundError, match="--restore-previous: no previous run in"):
        RunFolder(out).restore_previous()
    shutil.copytree(out, tmp_path / "copy")
    os.replace(tmp_path / "copy", out / PREVIOUS)  # a complete run next to a previous one
    with pytest.raises(ValueError, match="holds a complete run .*which restoring would delete"):
        RunFolder(out).restore_previous()
    with pytest.raises(ValueError, match="replacing now would delete one of them"):
        RunFolder(out, overwrite=True).check()
    assert main(["train", "--out", str(out), "--restore-previous", "--overwrite"]) == 2
    assert "--restore-previous excludes --resume and --overwrite" in capsys.readouterr().err
    assert (out / PREVIOUS / "last").is_dir() and (out / "last").is_dir()


def test_a_hidden_previous_run_of_older_versions_is_taken_over(tmp_path) -> None:
    out = tmp_path / "run"
    original = _fake_run(tmp_path / "old", "original")
    out.mkdir()
    os.replace(tmp_path / "old", out / ".previous-run")
    (out / "recipe.yaml").write_text("interrupted")
    said, notify = _messages()
    RunFolder(out, notify=notify).restore_previous()
    assert _snapshot(out) == original
    assert any(str(out / ".previous-run") in m and str(out / PREVIOUS) in m for m in said)


# ------------------------------------------------------------------------------ disk full
def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def _safetensors_enospc(*args, **kwargs):
    raise RuntimeError(  # what safetensors' Rust writer raises
        'Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No '
        'space left on device" })'
    )


@pytest.mark.parametrize(
    ("target", "writer"),
    [("torch.save", _enospc), ("safetensors.torch.save_file", _safetensors_enospc)],
)
def test_a_full_disk_names_the_checkpoint_and_keeps_the_previous(
    trained, tmp_path, monkeypatch, target, writer
) -> None:
    folder = tmp_path / "last"
    shutil.copytree(trained / "last", folder)
    before = _snapshot(folder)
    state = torch.load(folder / "training_state.pt", weights_only=True)
    monkeypatch.setattr(target, writer)
    with pytest.raises(OSError, match="no space left on the device while saving") as error:
        save_checkpoint(folder, create_model("tiny"), state)
    assert error.value.errno == errno.ENOSPC
    assert f"the previous checkpoint in {str(folder)!r} is intact" in str(error.value)
    assert _snapshot(folder) == before
    assert [p.name for p in tmp_path.iterdir()] == ["last"]  # no temporary folder left
    with pytest.raises(OSError, match="no previous checkpoint was there, and nothing was"):
        save_checkpoint(tmp_path / "fresh", create_model("tiny"), state)
    assert not (tmp_path / "fresh").exists()


def test_a_state_write_keeps_its_errno(tmp_path, monkeypatch) -> None:
    def full_disk_open(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint_module, "open", full_disk_open, raising=False)
    with pytest.raises(OSError) as error:
        checkpoint_module._write_state(tmp_path / "s.pt", {"a": 1})
    assert error.value.errno == errno.ENOSPC
    assert not (tmp_path / "s.pt").exists()


AUTO_SMALL = [
    "--train-videos", "8", "--val-videos", "2", "--val-frames", "2", "--num-frames", "2",
    "--size", "32", "--batch-size", "4", "--no-progress", "--overlays", "0",
    "--device", "cpu", "--no-tensorboard",
]  # fmt: skip


def test_auto_resume_starts_then_continues_the_run(tmp_path) -> None:
    """One command line for the first launch and a restart: fresh without ``last/``,
    continued from it after (the second launch trains only the epoch the first did not)."""
    from rvoslib.cli import main

    out = tmp_path / "run"
    (out).mkdir()
    (out / "recipe.yaml").write_text("left by a launch killed before its first checkpoint\n")
    assert main(["train", *AUTO_SMALL, "--epochs", "1", "--auto-resume", "--out", str(out)]) == 0
    assert "left by" not in (out / "recipe.yaml").read_text()
    assert not (out / "previous-run").exists()
    first = (out / "history.jsonl").read_text().splitlines()
    assert main(["train", *AUTO_SMALL, "--epochs", "2", "--auto-resume", "--out", str(out)]) == 0
    history = (out / "history.jsonl").read_text().splitlines()
    assert len(first) == 1 and len(history) == 2 and history[0] == first[0]


@pytest.mark.parametrize("other", ["--resume", "--overwrite", "--restore-previous"])
def test_auto_resume_excludes_the_other_run_options(tmp_path, other, capsys) -> None:
    from rvoslib.cli import main

    out = tmp_path / "run"
    assert main(["train", *AUTO_SMALL, "--auto-resume", other, "--out", str(out)]) == 2
    assert "--auto-resume excludes --resume, --overwrite and --restore-previous" in (
        capsys.readouterr().err
    )
    assert not out.exists()
