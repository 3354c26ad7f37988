"""Faults on a two-node run: a worker killed with SIGKILL mid-epoch, restarted by torchrun.

Two ``torchrun --nnodes 2 --nproc-per-node 1`` agents on this machine (c10d rendezvous on
127.0.0.1, gloo) train the quickstart recipe, reduced to nine steps; the faulted run's rank 1
is killed in epoch 1, after the epoch-0 checkpoint, and ``--max-restarts 1`` restarts both
workers, which continue from ``last/`` (``Trainer(resume="auto")``). The final weights must
equal those of an uninterrupted two-node run of the same seed, tensor for tensor.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from safetensors.torch import load_file

from rvoslib import create_model
from rvoslib.data import SyntheticRVOSDataset
from rvoslib.training import Trainer, TrainerConfig
from rvoslib.training.distributed import elastic_restart_problem
from rvoslib.training.trainer import AUTO_RESUME

REPO = Path(__file__).resolve().parents[1]
#: The quickstart recipe, reduced: 12 videos, 2 per rank and step: 3 steps an epoch, 3 epochs.
STEPS_PER_EPOCH, EPOCHS = 3, 3
#: The faulted run's rank 1 waits to be killed after this step (the second of epoch 1).
KILL_AFTER_STEP = STEPS_PER_EPOCH + 2

WORKER = '''
import json, os, sys, time
from pathlib import Path

import torch

from rvoslib.data import build_datasets
from rvoslib.recipes import build_model, load_recipe, recipe_from_dict
from rvoslib.training import Callback, Trainer, init_distributed


class PauseForKill(Callback):
    """Once (no marker yet), rank 1: after step ``at``, write its pid and wait to be killed."""

    def __init__(self, at, marker):
        self.at, self.marker = at, marker

    def on_step_end(self, trainer, step, logs):
        if self.at and trainer.context.rank == 1 and step == self.at and not self.marker.exists():
            record = {"pid": os.getpid(), "epoch": trainer.epoch, "step": step}
            self.marker.write_text(json.dumps(record))
            while True:
                time.sleep(1)


out, pause_at = Path(sys.argv[1]), int(sys.argv[2])
torch.set_num_threads(1)
values = load_recipe("quickstart").to_dict()
values["data"].update(num_frames=2, size=32, train_videos=12, val_videos=2, val_frames=2)
values["trainer"].update(epochs=EPOCHS, batch_size=2, max_time=None, output_dir=str(out),
                         device="cpu", tensorboard=False, progress=False)
recipe = recipe_from_dict(values, "the test recipe")
context = init_distributed(recipe.trainer.device)
train, val = build_datasets(recipe.data, seed=recipe.trainer.seed)
torch.manual_seed(recipe.trainer.seed)
model = build_model(recipe.model)
trainer = Trainer(model, train, val, recipe.trainer, resume="auto", context=context,
                  run_info={"data": recipe.data.to_dict()},
                  callbacks=[PauseForKill(pause_at, out.parent / (out.name + ".pause.json"))])
start = {"rank": context.rank, "epoch": trainer.epoch, "step": trainer.step,
         "steps_per_epoch": trainer.steps_per_epoch}
with open(out.parent / (out.name + ".starts.jsonl"), "a") as stream:
    stream.write(json.dumps(start) + "\\n")
trainer.fit()
torch.distributed.destroy_process_group()
'''.replace("EPOCHS", str(EPOCHS))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _launch(tmp_path: Path, name: str, pause_at: int) -> list[subprocess.Popen]:
    """Start the two nodes (two torchrun agents) of run ``name``; logs in ``name.node<k>.log``."""
    script = tmp_path / "worker.py"
    if not script.exists():
        script.write_text(WORKER)
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        # a fresh store per rendezvous round: the shared one keeps the killed round's gloo keys
        "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
        "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{_free_port()}",
        "--rdzv-id", name, "--local-addr", "127.0.0.1", "--max-restarts", "1",
        str(script), str(tmp_path / name), str(pause_at),
    ]  # fmt: skip
    nodes = []
    for node in range(2):
        log = open(tmp_path / f"{name}.node{node}.log", "w")  # noqa: SIM115 (closed by the OS)
        nodes.append(
            subprocess.Popen(
                command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        )
    return nodes


def _logs(tmp_path: Path, name: str) -> str:
    return "\n".join((tmp_path / f"{name}.node{node}.log").read_text()[-2500:] for node in range(2))


def _wait_for(path: Path, nodes: list[subprocess.Popen], timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.is_file() and path.read_text().endswith("}"):
            return json.loads(path.read_text())
        if any(node.poll() is not None for node in nodes):
            break
        time.sleep(0.2)
    raise AssertionError(f"{path.name} never appeared")


@pytest.mark.slow
@pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()),
    reason="torch.distributed with the gloo backend is not available in this torch build",
)
def test_worker_killed_mid_epoch_resumes_to_the_uninterrupted_weights(tmp_path: Path) -> None:
    reference = _launch(tmp_path, "reference", 0)
    faulted = _launch(tmp_path, "faulted", KILL_AFTER_STEP)
    try:
        try:
            paused = _wait_for(tmp_path / "faulted.pause.json", faulted, timeout=240)
        except AssertionError as error:
            raise AssertionError(f"{error}:\n{_logs(tmp_path, 'faulted')}") from None
        # mid-epoch 1, after the epoch-0 checkpoint (history.jsonl is written with it)
        assert paused["epoch"] == 1 and paused["step"] == KILL_AFTER_STEP
        assert (tmp_path / "faulted" / "last" / "model.safetensors").is_file()
        history = (tmp_path / "faulted" / "history.jsonl").read_text().splitlines()
        assert [json.loads(line)["epoch"] for line in history] == [0]
        os.kill(paused["pid"], signal.SIGKILL)
        for node in (*faulted, *reference):
            node.wait(timeout=240)
    finally:
        for node in (*faulted, *reference):
            if node.poll() is None:
                os.killpg(node.pid, signal.SIGKILL)
                node.wait()
    for name, nodes in (("reference", reference), ("faulted", faulted)):
        codes = [node.returncode for node in nodes]
        assert codes == [0, 0], f"{name} run exit codes {codes}:\n{_logs(tmp_path, name)}"
    assert "pytorch/pytorch#135712" not in _logs(tmp_path, "reference")  # store not shared
    starts = [
        json.loads(line) for line in (tmp_path / "faulted.starts.jsonl").read_text().splitlines()
    ]
    # both ranks started at step 0, then both restarted workers continued from last/ (epoch 1)
    assert sorted((s["rank"], s["epoch"], s["step"]) for s in starts) == [
        (0, 0, 0),
        (0, 1, STEPS_PER_EPOCH),
        (1, 0, 0),
        (1, 1, STEPS_PER_EPOCH),
    ]
    assert {s["steps_per_epoch"] for s in starts} == {STEPS_PER_EPOCH}
    expected = load_file(tmp_path / "reference" / "last" / "model.safetensors")
    actual = load_file(tmp_path / "faulted" / "last" / "model.safetensors")
    assert sorted(actual) == sorted(expected)
    for name, value in expected.items():
        assert torch.equal(actual[name], value), name
    histories = [
        [json.loads(line) for line in (tmp_path / run / "history.jsonl").read_text().splitlines()]
        for run in ("reference", "faulted")
    ]
    assert [r["epoch"] for r in histories[1]] == list(range(EPOCHS))
    for key in ("train_loss", "steps", "JF"):
        assert [r[key] for r in histories[1]] == [r[key] for r in histories[0]], key


# ------------------------------------------------------------------ resume="auto", one process
def _trainer(out: Path | None, epochs: int, resume: str | Path | None) -> Trainer:
    torch.manual_seed(0)
    model = create_model(
        "tiny",
        text_encoder={"out_dim": 32},
        fusion={"hidden_dim": 32, "num_heads": 2},
        head={"hidden_channels": 16},
    )
    data = SyntheticRVOSDataset(num_videos=4, num_frames=2, size=32, seed=1)
    settings = TrainerConfig(
        epochs=epochs,
        batch_size=2,
        accumulation_steps=1,
        progress=False,
        device="cpu",
        tensorboard=False,
        output_dir=None if out is None else str(out),
    )
    return Trainer(model, data, config=settings, resume=resume)


def test_auto_resume_starts_fresh_then_continues_from_last(tmp_path: Path) -> None:
    first = _trainer(tmp_path / "run", epochs=1, resume=AUTO_RESUME)
    assert (first.epoch, first.step) == (0, 0)  # no last/ yet: a fresh start
    first.fit()
    again = _trainer(tmp_path / "run", epochs=2, resume=AUTO_RESUME)
    assert (again.epoch, again.step) == (1, 2)  # the same call now continues from last/
    for name, value in first.model.state_dict().items():
        assert torch.equal(again.model.state_dict()[name], value), name


def test_auto_resume_puts_back_an_interrupted_save(tmp_path: Path) -> None:
    _trainer(tmp_path / "run", epochs=1, resume=None).fit()
    last = tmp_path / "run" / "last"
    last.rename(tmp_path / "run" / ".last.interrupted.old")  # as a save killed mid-rename
    resumed = _trainer(tmp_path / "run", epochs=2, resume=AUTO_RESUME)
    assert resumed.epoch == 1 and last.is_dir()


def test_auto_resume_without_output_dir_is_refused() -> None:
    with pytest.raises(ValueError, match=r"resume='auto' .* config.output_dir is None"):
        _trainer(None, epochs=1, resume=AUTO_RESUME)


def test_a_folder_named_auto_is_a_checkpoint_path(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"auto.*not found"):
        _trainer(tmp_path / "run", epochs=1, resume=Path("auto"))


# ------------------------------------------------------------------ the shared-store warning
SHARED = {
    "TORCHELASTIC_USE_AGENT_STORE": "True",
    "TORCHELASTIC_MAX_RESTARTS": "1",
    "GROUP_WORLD_SIZE": "2",
}


def test_restartable_multinode_launch_with_shared_store_is_named() -> None:
    problem = elastic_restart_problem(SHARED)
    assert problem is not None
    assert "2 nodes with --max-restarts 1" in problem
    assert "TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1" in problem and "135712" in problem


@pytest.mark.parametrize(
    "change",
    [
        {"TORCHELASTIC_USE_AGENT_STORE": "False"},  # TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1
        {"TORCHELASTIC_MAX_RESTARTS": "0"},
        {"GROUP_WORLD_SIZE": "1"},
        {"GROUP_WORLD_SIZE": ""},
    ],
)
def test_launches_a_restart_cannot_break_are_not_flagged(change: dict[str, str]) -> None:
    assert elastic_restart_problem({**SHARED, **change}) is None
    assert elastic_restart_problem({}) is None


@pytest.mark.parametrize(("rank", "warned"), [("0", True), ("1", False)])
def test_rank_0_warns_at_init(monkeypatch, rank: str, warned: bool) -> None:
    import warnings

    from rvoslib import _distributed

    for name, value in {**SHARED, "RANK": rank, "WORLD_SIZE": "2", "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(_distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(_distributed.dist, "init_process_group", lambda backend: None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        context = _distributed.init_distributed("cpu")
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert context.rank == int(rank) and context.world_size == 2
    assert any("TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1" in m for m in messages) is warned
