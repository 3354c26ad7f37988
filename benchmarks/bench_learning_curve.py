"""Learning curve of a training recipe: held-out J per kind of expression every N steps.

Method: the recipe is resolved exactly as ``rvos train`` resolves it (the options after ``--``
are ``rvos train`` options), except that the run is bounded by steps instead of time
(``--max-steps``, default: the recipe's epochs; ``max_time`` is ignored) so that evaluating
does not change what is trained. Every ``--every`` optimizer steps the model is scored with the
official J&F on ``--videos`` held-out synthetic videos of 8 frames (seed = the recipe's seed +
100003, as ``rvos eval`` and ``bench_main_job.py`` use) and J is reported per kind of
expression; ``train_s`` is the training time up to that step, evaluation excluded. One JSON
line per evaluation is printed and appended to ``--out``.

This is how the plateaus of the main job were found (``benchmarks/RESULTS.md``, "The language
model's learning rate"): which attribute is learned when, and which never is.

Example::

    python benchmarks/bench_learning_curve.py --every 384 --out runs/curve.jsonl \\
        -- --text-lr-mult 1.0
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--every", type=int, default=384, help="optimizer steps between scores")
    parser.add_argument("--videos", type=int, default=160, help="held-out videos per score")
    parser.add_argument("--max-steps", type=int, default=None, help="default: the recipe's")
    parser.add_argument("--out", default="runs/learning_curve.jsonl")
    parser.add_argument("train_args", nargs="*", help="rvos train options (after --)")
    args = parser.parse_args(argv)
    if args.every < 1 or args.videos < 1:
        parser.error(f"--every and --videos must be >= 1, got {args.every} and {args.videos}")

    import torch

    from rvoslib.cli.evaluate import by_kind
    from rvoslib.cli.train import resolve_recipe
    from rvoslib.data import SyntheticRVOSDataset, collator_for
    from rvoslib.data.builder import build_datasets
    from rvoslib.evaluation import evaluate
    from rvoslib.recipes import build_model
    from rvoslib.training import LambdaCallback, Trainer

    recipe = resolve_recipe(args.train_args)
    if recipe.data.dataset != "synthetic":
        parser.error(f"the recipe's data must be synthetic, got {recipe.data.dataset!r}")
    trainer_config = dataclasses.replace(
        recipe.trainer,
        max_time=None,
        max_steps=args.max_steps,
        progress=False,
        output_dir=recipe.trainer.output_dir or "runs/learning_curve",
    )
    train_data, val_data = build_datasets(recipe.data, seed=trainer_config.seed)
    torch.manual_seed(trainer_config.seed)
    model = build_model(recipe.model)
    held_out = SyntheticRVOSDataset(
        args.videos, 8, recipe.data.size, seed=trainer_config.seed + 100_003,
        attributes=recipe.data.attributes,
    )  # fmt: skip
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    started, scoring = time.perf_counter(), 0.0

    def score(trainer: Trainer, step: int, _info: dict) -> None:
        nonlocal scoring
        if step % args.every:
            return
        began = time.perf_counter()
        kinds: dict[tuple[str, str], str] = {}

        def record(prediction) -> None:
            item = prediction.item
            kinds[(item["video_id"], str(item["exp_id"]))] = str(item["kind"])

        result = evaluate(
            trainer.model, held_out, collate_fn=collator_for(trainer.model.inputs),
            device=trainer.device, on_prediction=record, compute_loss=False,
        )  # fmt: skip
        trainer.model.train()
        scoring += time.perf_counter() - began
        row = {
            "step": step,
            "train_s": round(time.perf_counter() - started - scoring, 1),
            "JF": round(result.summary["JF"], 4),
            **{k: round(v["J"], 3) for k, v in by_kind(result.per_sequence, kinds).items()},
        }
        print(json.dumps(row), flush=True)
        with out.open("a") as handle:
            handle.write(json.dumps(row) + "\n")

    trainer = Trainer(
        model, train_data, val_data, trainer_config,
        callbacks=[LambdaCallback(on_step_end=score)],
    )  # fmt: skip
    trainer.fit()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
