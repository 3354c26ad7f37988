"""Train the ``tiny`` preset on the built-in synthetic dataset (no download, a few CPU minutes).

    python examples/train_synthetic.py --out runs/synthetic

The same API as examples/train_davis.py: a dataset, a preset, a TrainerConfig and a Trainer.
The held-out videos come from another seed, so J&F measures generalisation to new videos.
"""

from __future__ import annotations

import argparse
import json

from rvoslib import create_model
from rvoslib.data import SyntheticRVOSDataset
from rvoslib.training import Trainer, TrainerConfig


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="runs/synthetic")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--videos", type=int, default=1536)
    parser.add_argument("--smoke", action="store_true", help="a few seconds: checks the pipeline")
    args = parser.parse_args()

    videos, val_videos, epochs = (args.videos, 96, args.epochs) if not args.smoke else (16, 4, 1)
    words = ("color", "shape", "position")  # as rvos train; add "motion" for motion words
    train_data = SyntheticRVOSDataset(
        num_videos=videos, num_frames=4, size=64, seed=0, attributes=words, cache=True
    )
    val_data = SyntheticRVOSDataset(
        num_videos=val_videos, num_frames=8, size=64, seed=100_003, attributes=words
    )
    model = create_model("tiny")
    config = TrainerConfig(
        epochs=epochs,
        batch_size=16,
        lr=2e-3,
        text_lr_mult=1.0,
        accumulation_steps=1,
        t_0=epochs,
        output_dir=args.out,
    )
    history = Trainer(model, train_data, val_data, config).fit()
    print(json.dumps(history[-1], indent=2))


if __name__ == "__main__":
    main()
