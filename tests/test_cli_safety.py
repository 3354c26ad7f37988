"""Nothing a user does with ``rvos`` loses their work: typos, concurrent runs, kills, corrupt
files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from rvoslib import RVOSModel, create_model
from rvoslib.cli import main
from rvoslib.training import RunFolder, RunLockedError

SMALL = [
    "--train-videos", "8", "--val-videos", "2", "--val-frames", "2", "--num-frames", "2",
    "--size", "32", "--batch-size", "4", "--epochs", "1", "--no-progress", "--overlays", "0",
    "--device", "cpu", "--no-tensorboard",
]  # fmt: skip
ROOT = Path(__file__).resolve().parents[1]


def _rvos(*argv: str, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "rvoslib", *argv], capture_output=True, text=True, env=env, **kwargs
    )


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("finished") / "run"
    assert main(["train", *SMALL, "--out", str(out)]) == 0
    return out


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (["--root", "/no/such/root", "--dataset", "davis"], "/no/such/root"),
        (["--size", "5"], "size must be >= 32"),
        (["--clip-grad-norm", "-1"], "clip_grad_norm must be > 0 (or None to disable), got -1.0"),
        (["--epochs", "0"], "epochs must be >= 1, got 0"),
        (["--preset", "nope"], "unknown preset 'nope'"),
    ],
)
def test_overwrite_with_a_bad_argument_keeps_the_finished_run(finished_run, bad, message) -> None:
    before = _snapshot(finished_run)
    result = _rvos("train", *SMALL, "--out", str(finished_run), "--overwrite", *bad)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert _snapshot(finished_run) == before


def test_a_failing_overwrite_puts_the_previous_run_back(finished_run, tmp_path) -> None:
    import shutil

    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    before = _snapshot(out)

    class Boom(RuntimeError):
        pass

    with pytest.raises(Boom), RunFolder(out, overwrite=True):
        assert not (out / "last").exists()  # moved aside while the new run starts
        (out / "history.jsonl").write_text("partial")
        raise Boom
    assert _snapshot(out) == before
    with RunFolder(out, overwrite=True, notify=lambda _: None) as folder:
        assert (out / "previous-run").is_dir()  # the old run, complete and visible
        shutil.copytree(finished_run / "last", out / "last")
        folder.started()  # the new run's first complete checkpoint: the old run goes
        assert not (out / "previous-run").exists()


def test_a_second_run_on_the_same_folder_is_refused(tmp_path) -> None:
    out = tmp_path / "run"
    first = subprocess.Popen(
        [sys.executable, "-m", "rvoslib", "train", *SMALL, "--out", str(out), "--epochs", "50",
         "--train-videos", "64"],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        deadline = time.time() + 120
        while not (out / ".rvos.lock").exists():
            assert first.poll() is None and time.time() < deadline, first.stderr.read()
            time.sleep(0.2)
        second = _rvos("train", *SMALL, "--out", str(out), "--overwrite")
        assert second.returncode == 2
        assert "is in use by another run (pid" in second.stderr
        assert f"pid {first.pid} on host" in second.stderr
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    with (  # the holder died: its lock is stale
        pytest.warns(RuntimeWarning, match="removing the stale lock"),
        RunFolder(out, overwrite=True),
    ):
        pass


def test_a_held_lock_is_refused_in_process(tmp_path) -> None:
    with (
        RunFolder(tmp_path / "run"),
        pytest.raises(RunLockedError, match="is in use by another run"),
    ):
        RunFolder(tmp_path / "run").__enter__()


def test_an_output_path_that_is_a_file_fails_before_training(tmp_path, capsys) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    assert main(["train", *SMALL, "--out", str(target)]) == 2
    assert f"--output-dir {str(target)!r} is a file" in capsys.readouterr().err


def test_resume_refuses_other_data(finished_run, capsys) -> None:
    argv = ["train", *SMALL, "--out", str(finished_run), "--resume", "--epochs", "2"]
    assert main([*argv, "--size", "48"]) == 2
    assert "data.size: 32 (checkpoint) != 48 (now)" in capsys.readouterr().err
    assert main([*argv, "--num-frames", "3"]) == 2
    assert "data.num_frames: 2 (checkpoint) != 3 (now)" in capsys.readouterr().err


def test_skipped_steps_set_the_exit_code_and_metrics(tmp_path, monkeypatch, capsys) -> None:
    from rvoslib.data.synthetic import SyntheticRVOSDataset

    original = SyntheticRVOSDataset.__getitem__

    def poisoned(self, index):
        item = original(self, index)
        if index == 0 and len(self) == 8:  # one training clip
            item = dict(item)
            item["frames"] = item["frames"].clone()
            item["frames"][0, 0, 0, 0] = float("nan")
        return item

    monkeypatch.setattr(SyntheticRVOSDataset, "__getitem__", poisoned)
    out = tmp_path / "run"
    assert main(["train", *SMALL, "--out", str(out), "--batch-size", "2"]) == 3
    assert "1 steps were skipped" in capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["nonfinite_steps"] == 1


def test_max_time_says_it_stopped_the_run(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    assert main(["train", *SMALL, "--out", str(out), "--epochs", "5", "--max-time", "1e-6"]) == 0
    assert "max_time (1e-06 s) reached" in capsys.readouterr().err
    assert json.loads((out / "metrics.json").read_text())["stopped_by"] == "max_time"


def test_killed_checkpoint_saves_always_leave_a_loadable_last(tmp_path) -> None:
    """Kill a process that saves checkpoints in a loop at random instants; after each kill,
    recovery leaves a complete ``last/`` that loads."""
    script = (
        "import sys, torch; from rvoslib import create_model; "
        "from rvoslib.training.checkpoint import save_checkpoint\n"
        "model = create_model('tiny'); out = sys.argv[1]\n"
        "print('ready', flush=True)\n"
        "i = 0\n"
        "while True:\n"
        "    i += 1; save_checkpoint(out, model, {'i': i})\n"
    )
    from rvoslib._io import recover_directory

    target = tmp_path / "last"
    create_model("tiny").save_pretrained(target)
    for attempt in range(6):
        process = subprocess.Popen(
            [sys.executable, "-c", script, str(target)],
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.PIPE,
            text=True,
        )
        assert process.stdout.readline().strip() == "ready"
        time.sleep(0.15 + 0.11 * attempt)
        process.send_signal(signal.SIGKILL)
        process.wait()
        recover_directory(target)
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
        RVOSModel.from_pretrained(target)  # complete and loadable


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        ("config.json", "is not valid JSON"),
        ("model.safetensors", "is not a readable safetensors file"),
    ],
)
def test_corrupt_model_files_are_named(tmp_path, corrupt, message) -> None:
    folder = tmp_path / "m"
    create_model("tiny").save_pretrained(folder)
    path = folder / corrupt
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(ValueError, match=message) as error:
        RVOSModel.from_pretrained(folder)
    assert str(path) in str(error.value)


def test_a_truncated_training_state_is_named(finished_run, tmp_path) -> None:
    import shutil

    from rvoslib.training import load_training_state

    copy = tmp_path / "last"
    shutil.copytree(finished_run / "last", copy)
    state = copy / "training_state.pt"
    state.write_bytes(state.read_bytes()[:100])
    with pytest.raises(ValueError, match="training_state.pt") as error:
        load_training_state(copy)
    assert "truncated or corrupt" in str(error.value)


def test_unavailable_device_is_said_plainly(capsys) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert main(["train", *SMALL, "--device", "cuda", "--out", "/tmp/never"]) == 2
    assert "device 'cuda' requested but CUDA is not available" in capsys.readouterr().err
