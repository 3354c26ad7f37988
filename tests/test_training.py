"""Trainer: learning, accumulation, resume, checkpoints, non-finite losses, DDP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rvoslib import RVOSLoss, create_model
from rvoslib.data import ShuffledTextDataset, SyntheticRVOSDataset
from rvoslib.metrics.batch import batch_iou
from rvoslib.training import (
    LambdaCallback,
    NonFiniteLossError,
    ShardSampler,
    Trainer,
    TrainerConfig,
    load_training_state,
)

SCRIPT = Path(__file__).with_name("_train_script.py")


def small_model():
    torch.manual_seed(0)
    return create_model(
        "tiny",
        text_encoder={"out_dim": 32},
        fusion={"hidden_dim": 32, "num_heads": 2},
        head={"hidden_channels": 16},
    )


def small_data(videos=8, frames=2, size=32, seed=1):
    return SyntheticRVOSDataset(num_videos=videos, num_frames=frames, size=size, seed=seed)


def config(**changes) -> TrainerConfig:
    settings = {
        "epochs": 1,
        "batch_size": 2,
        "accumulation_steps": 1,
        "progress": False,
        "device": "cpu",
    }
    return TrainerConfig(**{**settings, **changes})


def test_loss_decreases_on_a_short_run() -> None:
    data = small_data(videos=4)
    trainer = Trainer(small_model(), data, config=config(epochs=8, lr=3e-3, batch_size=4, t_0=100))
    history = trainer.fit()
    assert history[-1]["train_loss"] < 0.9 * history[0]["train_loss"]
    assert history[-1]["steps"] == 8


def _norm_in_eval_mode(model):
    """BatchNorm always in eval mode, so micro-batches and a whole batch see the same statistics."""
    plain_train = model.train

    def train(mode=True):
        plain_train(mode)
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.eval()
        return model

    model.train = train
    return model


def test_accumulation_equals_a_larger_batch() -> None:
    """The gradients of 2 x 2 and 4 x 1 micro-batches equal those of one batch of 4."""
    data = small_data(videos=8)
    runs = {}
    for batch_size, accumulation in [(4, 1), (2, 2), (1, 4)]:
        trainer = Trainer(
            _norm_in_eval_mode(small_model()),
            data,
            config=config(
                batch_size=batch_size, accumulation_steps=accumulation, clip_grad_norm=None
            ),
        )
        gradients = []
        step = trainer.optimizer.step

        def recording_step(*args, _step=step, _grads=gradients, _opt=trainer.optimizer, **kwargs):
            _grads.append([p.grad.clone() for g in _opt.param_groups for p in g["params"]])
            return _step(*args, **kwargs)

        trainer.optimizer.step = recording_step
        trainer.fit()
        assert trainer.step == 2
        runs[(batch_size, accumulation)] = gradients
    reference = runs[(4, 1)]
    for key in [(2, 2), (1, 4)]:
        for step_grads, reference_grads in zip(runs[key], reference):
            for actual, expected in zip(step_grads, reference_grads):
                torch.testing.assert_close(actual, expected, atol=1e-6, rtol=1e-4)


def test_incomplete_accumulation_group_still_steps() -> None:
    trainer = Trainer(
        small_model(), small_data(videos=6), config=config(batch_size=2, accumulation_steps=2)
    )
    trainer.fit()
    assert trainer.step == 2  # 3 micro-batches: one full group and one partial group


def test_validation_checkpoints_and_history(tmp_path) -> None:
    seen = []
    trainer = Trainer(
        small_model(),
        small_data(),
        small_data(videos=3, seed=9),
        config(epochs=2, output_dir=str(tmp_path)),
        callbacks=[LambdaCallback(on_validation_end=lambda t, e, m: seen.append(m))],
    )
    history = trainer.fit()
    assert len(seen) == 2 and {"J", "F", "JF", "val_loss"} <= set(seen[0])
    assert 0.0 <= history[-1]["JF"] <= 1.0
    lines = (tmp_path / "history.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [0, 1]
    for name in ("last", "best"):
        state = load_training_state(tmp_path / name)
        assert {"optimizer", "scheduler", "scaler", "rng", "trainer_config", "best_metric"} <= set(
            state
        )
    assert load_training_state(tmp_path / "last")["epoch"] == 2


def test_failed_save_keeps_previous_checkpoint(tmp_path, monkeypatch) -> None:
    trainer = Trainer(small_model(), small_data(videos=4), config=config(output_dir=str(tmp_path)))
    trainer.fit()
    before = (tmp_path / "last" / "model.safetensors").read_bytes()

    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    import rvoslib.training.checkpoint as checkpoint

    monkeypatch.setattr(checkpoint.torch, "save", broken_save)
    trainer.config.epochs = 2
    with pytest.raises(OSError, match="disk full"):
        trainer.fit()
    assert (tmp_path / "last" / "model.safetensors").read_bytes() == before
    assert load_training_state(tmp_path / "last")["epoch"] == 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_nonfinite_losses_are_skipped_and_counted() -> None:
    calls = {"n": 0}

    class SometimesNaN(RVOSLoss):
        def forward(self, logits, masks, valid=None, void=None):
            calls["n"] += 1
            loss = super().forward(logits, masks, valid, void)
            return loss * float("nan") if calls["n"] == 2 else loss

    trainer = Trainer(
        small_model(), small_data(videos=8), config=config(), criterion=SometimesNaN()
    )
    history = trainer.fit()
    assert history[0]["nonfinite_steps"] == 1
    assert all(bool(torch.isfinite(p).all()) for p in trainer.model.parameters())


def test_too_many_nonfinite_losses_stop_the_run() -> None:
    class AlwaysNaN(RVOSLoss):
        def forward(self, logits, masks, valid=None, void=None):
            return super().forward(logits, masks, valid, void) * float("nan")

    trainer = Trainer(
        small_model(),
        small_data(videos=8),
        config=config(max_nonfinite_steps=2),
        criterion=AlwaysNaN(),
    )
    with pytest.raises(
        NonFiniteLossError, match="3 consecutive steps with a non-finite loss or gradient"
    ):
        trainer.fit()


def test_early_stopping() -> None:
    trainer = Trainer(
        small_model(),
        small_data(videos=2),
        small_data(videos=2, seed=5),
        config(epochs=10, early_stopping_patience=1, lr=1e-9),
    )
    trainer.fit()
    assert trainer.epoch < 10


def test_resume_with_different_config_names_keys(tmp_path) -> None:
    Trainer(small_model(), small_data(videos=2), config=config(output_dir=str(tmp_path))).fit()
    with pytest.raises(
        ValueError, match=r"its settings differ in lr: 0.0005 \(checkpoint\) != 0.001 \(now\)"
    ):
        Trainer(
            small_model(), small_data(videos=2), config=config(lr=1e-3), resume=tmp_path / "last"
        )
    with pytest.raises(ValueError, match="fusion.hidden_dim: 32 \\(checkpoint\\) != 64 \\(now\\)"):
        Trainer(
            create_model("tiny"), small_data(videos=2), config=config(), resume=tmp_path / "last"
        )
    with pytest.raises(FileNotFoundError, match="training_state.pt"):
        (tmp_path / "last" / "training_state.pt").unlink()
        Trainer(small_model(), small_data(videos=2), config=config(), resume=tmp_path / "last")


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="amp must be 'auto', 'bf16', 'fp16' or 'off', got 'fp8'"):
        TrainerConfig(amp="fp8")
    with pytest.raises(ValueError, match="accumulation_steps must be >= 1, got 0"):
        TrainerConfig(accumulation_steps=0)
    with pytest.raises(ValueError, match="amp='fp16' needs a CUDA device"):
        Trainer(small_model(), small_data(videos=2), config=config(amp="fp16"))


def test_shard_sampler_covers_each_index_once() -> None:
    shards = [list(ShardSampler(11, rank, 3, shuffle=True, seed=4)) for rank in range(3)]
    assert sorted(i for shard in shards for i in shard) == list(range(11))
    sampler = ShardSampler(11, 0, 1, seed=4)
    first = list(sampler)
    sampler.set_epoch(1)
    assert list(sampler) != first


def test_shuffled_text_never_keeps_its_own_expression() -> None:
    data = small_data(videos=6)
    shuffled = ShuffledTextDataset(data, seed=3)
    own = [data[i]["expression"] for i in range(6)]
    moved = [shuffled[i]["expression"] for i in range(6)]
    assert sorted(moved) == sorted(own)
    assert all(shuffled.partner[i] != i for i in range(6))
    assert torch.equal(shuffled[0]["masks"], data[0]["masks"])


def test_batch_iou() -> None:
    masks = torch.zeros(1, 2, 4, 4)
    masks[0, 0, :2] = 1
    logits = torch.full((1, 2, 1, 4, 4), -5.0)
    logits[0, 0, 0, :1] = 5.0
    # frame 0: IoU 4/8; frame 1: both empty -> 1
    assert batch_iou(logits, masks).item() == pytest.approx(0.75)
    assert batch_iou(logits, masks, torch.tensor([[True, False]])).item() == pytest.approx(0.5)


def _run_script(out: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, str(SCRIPT), str(out), *extra],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
def test_sigkill_and_resume_is_exact(tmp_path) -> None:
    full = _run_script(tmp_path / "full")
    assert full.returncode == 0, full.stderr
    killed = _run_script(tmp_path / "killed", "--kill-at-step", "5")  # mid-epoch 1 (3 steps/epoch)
    assert killed.returncode == -9
    assert load_training_state(tmp_path / "killed" / "last")["epoch"] == 1
    resumed = _run_script(tmp_path / "killed", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    expected = torch.load(tmp_path / "full" / "rank0.pt")
    actual = torch.load(tmp_path / "killed" / "rank0.pt")
    for name, value in expected["state"].items():
        assert torch.equal(actual["state"][name], value), name
    assert [r["train_loss"] for r in actual["history"]] == [
        r["train_loss"] for r in expected["history"]
    ]


@pytest.mark.slow
def test_ddp_two_gloo_processes(tmp_path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29517",
        str(SCRIPT), str(tmp_path), "--epochs", "2", "--validate",
    ]  # fmt: skip
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    for name, value in rank0["state"].items():
        assert torch.equal(rank1["state"][name], value), name
    for a, b in zip(rank0["history"], rank1["history"]):  # metrics reduced over ranks
        assert a["JF"] == b["JF"] and a["train_loss"] == b["train_loss"]
    assert load_training_state(tmp_path / "last")["world_size"] == 2


def test_max_time_stops_early_but_still_validates() -> None:
    trainer = Trainer(
        small_model(),
        small_data(videos=8),
        small_data(videos=2, seed=4),
        config(epochs=50, max_time=1e-6),
    )
    history = trainer.fit()
    assert len(history) == 1 and history[0]["steps"] == 1 and "JF" in history[0]


def test_predict_in_chunks_equals_one_pass() -> None:
    model = small_model().eval()
    tokens = model.tokenize(["the red circle"])
    video = torch.randn(1, 5, 3, 32, 32)
    batch = {
        "frames": video,
        "text_ids": tokens["input_ids"],
        "text_mask": tokens["attention_mask"],
    }
    with torch.no_grad():
        whole = model(video, tokens["input_ids"], tokens["attention_mask"])
    chunked, pieces = model.predict(batch, 5), model.predict(batch, 2)
    torch.testing.assert_close(chunked, whole)
    assert pieces.shape == whole.shape and pieces.dtype == torch.float32


def test_write_overlay_strips(tmp_path) -> None:
    from PIL import Image

    from rvoslib.data import collator_for
    from rvoslib.viz import write_overlay_strips

    model = small_model()
    paths = write_overlay_strips(
        model,
        small_data(videos=2, frames=4, seed=3),
        tmp_path,
        5,
        collate_fn=collator_for(model.inputs),
        frames_per_strip=2,
    )
    assert len(paths) == 2 and all(p.is_file() for p in paths)
    # items with masks: a prediction row and a ground-truth row, each under a 14 px label
    assert Image.open(paths[0]).size == (2 * 32, 2 * (14 + 32))
    assert len((tmp_path / "captions.txt").read_text().splitlines()) == 2


def test_warmup_raises_the_learning_rate_linearly() -> None:
    from rvoslib.training import LambdaCallback

    seen = []
    record = LambdaCallback(on_step_end=lambda trainer, step, logs: seen.append(logs["lr"]))
    trainer = Trainer(
        small_model(),
        small_data(videos=8),
        config=config(lr=1e-3, warmup_steps=4, t_0=1000, eta_min=0.0),
        callbacks=[record],
    )
    assert trainer.current_lr == pytest.approx(1e-3 / 4)  # the first step
    trainer.fit()  # 4 steps; logs hold the rate of the step after each one
    assert seen == pytest.approx([2e-3 / 4, 3e-3 / 4, 1e-3, 1e-3], rel=1e-5)


def test_the_epoch_record_holds_the_rate_of_its_last_step_not_the_restarted_one() -> None:
    from rvoslib.training import LambdaCallback

    seen = []
    record = LambdaCallback(on_step_end=lambda trainer, step, logs: seen.append(logs["lr"]))
    trainer = Trainer(
        small_model(),
        small_data(videos=8),
        config=config(epochs=2, lr=1e-3, t_0=2, eta_min=0.0),
        callbacks=[record],
    )
    history = trainer.fit()  # 2 epochs of 4 steps; the cosine restarts after the last step
    assert seen[-1] == pytest.approx(1e-3)  # the step logs: the rate of the next step
    assert history[0]["lr"] == pytest.approx(seen[2]) and history[1]["lr"] == pytest.approx(seen[6])
    assert history[1]["lr"] < history[0]["lr"] < 1e-3
