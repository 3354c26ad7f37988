"""Nothing a bad step or a bad setting does may poison a run: non-finite data, ranges, saves."""

from __future__ import annotations

import json
import math
import re

import pytest
import torch

from rvoslib import create_model
from rvoslib.data import SyntheticRVOSDataset
from rvoslib.training import NonFiniteLossError, Trainer, TrainerConfig
from rvoslib.training.step import BufferGuard


class PoisonedClip(torch.utils.data.Dataset):
    """Synthetic clips, one of which has a NaN pixel."""

    def __init__(self, poisoned: set[int], videos: int = 4) -> None:
        self.data = SyntheticRVOSDataset(num_videos=videos, num_frames=2, size=32, seed=1)
        self.poisoned = poisoned

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> dict:
        item = dict(self.data[index])
        if index in self.poisoned:
            item["frames"] = item["frames"].clone()
            item["frames"][0, 0, 3, 5] = float("nan")
        return item


def _config(**changes) -> TrainerConfig:
    base = {"epochs": 1, "batch_size": 1, "accumulation_steps": 1, "progress": False,
            "device": "cpu", "tensorboard": False}  # fmt: skip
    return TrainerConfig(**{**base, **changes})


def _buffers(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.named_buffers()}


def test_a_nan_pixel_leaves_parameters_optimizer_and_batchnorm_untouched() -> None:
    torch.manual_seed(0)
    trainer = Trainer(create_model("tiny"), PoisonedClip({0}, videos=1), config=_config())
    params = {k: v.detach().clone() for k, v in trainer.model.named_parameters()}
    buffers = _buffers(trainer.model)
    history = trainer.fit()
    assert history[0]["nonfinite_steps"] == 1 and trainer.step == 0
    for name, value in trainer.model.named_parameters():
        assert torch.equal(value, params[name]), name
    for name, value in trainer.model.named_buffers():
        assert torch.equal(value, buffers[name]), name  # BatchNorm statistics: exactly as before
    assert not trainer.optimizer.state  # the optimizer never stepped


def test_after_a_skipped_step_training_and_validation_stay_finite(tmp_path) -> None:
    torch.manual_seed(0)
    val = SyntheticRVOSDataset(num_videos=2, num_frames=2, size=32, seed=3)
    trainer = Trainer(
        create_model("tiny"),
        PoisonedClip({1}),
        val,
        config=_config(output_dir=str(tmp_path)),
    )
    record = trainer.fit()[0]
    assert record["nonfinite_steps"] == 1 and trainer.step == 3
    assert all(torch.isfinite(v).all() for v in trainer.model.state_dict().values())
    # history records pass through finite_or_none: a NaN score would be None here
    assert isinstance(record["JF"], float) and math.isfinite(record["JF"])
    for line in (tmp_path / "history.jsonl").read_text().splitlines():
        json.loads(line, parse_constant=lambda name: pytest.fail(f"bare {name} in history"))


def test_the_nonfinite_streak_spans_epochs() -> None:
    dataset = PoisonedClip({0, 1, 2, 3}, videos=4)  # 4 steps an epoch, all non-finite
    trainer = Trainer(
        create_model("tiny"), dataset, config=_config(epochs=3, max_nonfinite_steps=5)
    )
    with pytest.raises(NonFiniteLossError, match="6 consecutive steps"):
        trainer.fit()
    assert trainer.epoch == 1  # the first epoch (4 skips) ended; the second stopped at skip 6


def test_history_is_strict_json_when_a_metric_is_nan(tmp_path) -> None:
    from rvoslib.training.step import finite_or_none

    assert finite_or_none({"a": float("nan"), "b": [1.0, float("inf")]}) == {
        "a": None,
        "b": [1.0, None],
    }


def test_a_checkpoint_is_never_written_with_nonfinite_values(tmp_path) -> None:
    trainer = Trainer(
        create_model("tiny"), PoisonedClip(set()), config=_config(output_dir=str(tmp_path))
    )
    trainer.fit()
    before = (tmp_path / "last" / "model.safetensors").read_bytes()
    with torch.no_grad():
        trainer.model.head.classifier.weight[0, 0] = float("inf")
    with pytest.raises(NonFiniteLossError, match=r"refusing to save .*head.classifier.weight"):
        trainer.save(improved=True)
    assert (tmp_path / "last" / "model.safetensors").read_bytes() == before


def test_buffer_guard_restores_every_buffer() -> None:
    model = create_model("tiny").train()
    guard = BufferGuard(model)
    before = _buffers(model)
    tokens = model.tokenize(["a"])
    model(torch.randn(1, 2, 3, 32, 32), tokens["input_ids"])
    assert any(not torch.equal(v, before[k]) for k, v in model.named_buffers())
    guard.restore()
    assert all(torch.equal(v, before[k]) for k, v in model.named_buffers())


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("clip_grad_norm", -1.0, "clip_grad_norm must be > 0 (or None to disable), got -1.0"),
        ("clip_grad_norm", 0.0, "clip_grad_norm must be > 0 (or None to disable), got 0.0"),
        ("epochs", 0, "epochs must be >= 1, got 0"),
        ("max_time", 0.0, "max_time must be > 0 (or None to disable), got 0.0"),
        ("lr", -1e-3, "lr must be > 0, got -0.001"),
        ("threshold", 1.0, "threshold must be > 0 and < 1.0, got 1.0"),
        ("batch_size", 0, "batch_size must be >= 1, got 0"),
        ("betas", (0.9, 1.5), "betas must be two numbers in [0, 1), got [0.9, 1.5]"),
    ],
)
def test_trainer_config_ranges(field, value, message) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        TrainerConfig(**{field: value})


def test_clipping_can_be_turned_off() -> None:
    trainer = Trainer(
        create_model("tiny"), PoisonedClip(set(), videos=2), config=_config(clip_grad_norm=None)
    )
    assert trainer.fit()[0]["grad_norm"] > 0


def test_an_empty_training_set_is_refused() -> None:
    with pytest.raises(ValueError, match="train_dataset is empty"):
        Trainer(create_model("tiny"), [], config=_config())


def test_activation_checkpointing_keeps_the_gradients() -> None:
    from rvoslib.training.memory import enable_activation_checkpointing

    torch.manual_seed(0)
    bert = {"model_type": "bert", "vocab_size": 64, "hidden_size": 16, "num_hidden_layers": 1,
            "num_attention_heads": 2, "intermediate_size": 32}  # fmt: skip
    model = create_model("seed-r18", text_encoder={"config": bert, "tokenizer": "hash"}).eval()
    ids = torch.randint(5, 60, (1, 4))
    frames = torch.randn(1, 2, 3, 64, 64)
    model(frames, ids).pow(2).mean().backward()
    expected = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    assert enable_activation_checkpointing(model) >= 8 + 1  # 8 ResNet blocks, 1 BERT layer
    model(frames, ids).pow(2).mean().backward()
    for name, grad in expected.items():
        torch.testing.assert_close(dict(model.named_parameters())[name].grad, grad)
