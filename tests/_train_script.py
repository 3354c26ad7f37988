"""A small training run used by the kill/resume and DDP tests (run as a subprocess).

Usage: python tests/_train_script.py OUT [--resume] [--kill-at-step N] [--epochs E]
Writes OUT/final.pt with the final parameters (and OUT/rank<r>.pt under torchrun).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rvoslib import create_model
from rvoslib.data import SyntheticRVOSDataset
from rvoslib.training import Callback, Trainer, TrainerConfig


class KillAtStep(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, trainer, step, logs) -> None:
        if step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--kill-at-step", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--validate", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = create_model(
        "tiny",
        text_encoder={"out_dim": 32},
        fusion={"hidden_dim": 32, "num_heads": 2, "dropout": 0.1},
        head={"hidden_channels": 16},
    )
    train = SyntheticRVOSDataset(num_videos=12, num_frames=2, size=32, seed=1)
    val = (
        SyntheticRVOSDataset(num_videos=4, num_frames=2, size=32, seed=2) if args.validate else None
    )
    config = TrainerConfig(
        epochs=args.epochs,
        batch_size=2,
        accumulation_steps=2,
        lr=1e-3,
        progress=False,
        output_dir=args.out,
        device="cpu",
    )
    callbacks = [KillAtStep(args.kill_at_step)] if args.kill_at_step else []
    out = Path(args.out)
    trainer = Trainer(
        model, train, val, config, callbacks=callbacks, resume=out / "last" if args.resume else None
    )
    history = trainer.fit()
    rank = trainer.context.rank
    state = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
    torch.save({"state": state, "history": history}, out / f"rank{rank}.pt")
    if trainer.context.is_distributed:
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
