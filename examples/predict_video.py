"""Run a model on a video and look at the result.

Usage::

    # your own video (a folder of frames or an .mp4/.avi) and a trained model folder
    python examples/predict_video.py --checkpoint runs/best --video my_video.mp4 \\
        --text "the dog jumping" --out predictions/

    # no arguments: an untrained ``tiny`` model on a synthetic video (needs no file)
    python examples/predict_video.py --out predictions/

    # the quickstart model (``rvos train`` writes runs/rvos/best) on a held-out synthetic video
    # made as its training videos were: 64x64 frames, the model run at 64x64
    python examples/predict_video.py --checkpoint runs/rvos/best --synthetic-size 64 \\
        --size 64 --seed 32 --out predictions/

It writes ``overlay.png`` (a figure of frames and masks), ``overlay.gif`` and one mask PNG per
frame. The same as a command: ``rvos predict --checkpoint DIR --video PATH --text "..." --out
DIR --overlay``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image

import rvoslib
from rvoslib.inference import VideoPredictor
from rvoslib.viz import overlay_masks, plot_clip, save_animation


def synthetic_video(
    num_frames: int = 12, size: Sequence[int] = (96, 160), seed: int = 3
) -> tuple[torch.Tensor, str, torch.Tensor]:
    """Moving shapes: ``(T, 3, H, W)`` uint8 frames, an expression, ``(T, H, W)`` bool truth.

    The first video of ``SyntheticRVOSDataset`` with this ``seed`` (the default attributes:
    colour, shape, motion and position, as the quickstart recipe). ``rvos train`` draws its
    training videos with its ``--seed`` (0 by default) and its held-out ones with that seed +
    100003, so the video of seed 3 is in neither set.
    """
    from rvoslib.data import SyntheticRVOSDataset, denormalize

    dataset = SyntheticRVOSDataset(num_videos=1, num_frames=num_frames, size=tuple(size), seed=seed)
    item = dataset[0]
    frames = (denormalize(item["frames"]) * 255).round().to(torch.uint8)
    return frames, item["expression"], item["masks"] > 0.5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", help="model folder (default: untrained tiny model)")
    parser.add_argument("--video", help="frame folder or video file (default: synthetic)")
    parser.add_argument("--text", action="append", help="expression (repeatable)")
    parser.add_argument("--out", default="predictions", help="output folder")
    parser.add_argument("--size", type=int, default=360, help="model input shorter side")
    parser.add_argument("--clip-len", type=int, default=8, help="frames per forward pass")
    synthetic = parser.add_argument_group("the synthetic video (without --video)")
    synthetic.add_argument(
        "--synthetic-size", type=int, nargs="+", default=[96, 160], metavar="PIXELS",
        help="frame size: H W, or one number for square frames (default: 96 160)",
    )  # fmt: skip
    synthetic.add_argument("--seed", type=int, default=3, help="seed of the video (default: 3)")
    synthetic.add_argument("--frames", type=int, default=12, help="number of frames")
    figure = parser.add_argument_group("the figure overlay.png")
    figure.add_argument(
        "--interpolation", choices=("antialiased", "nearest"), default="antialiased",
        help="how frames are resampled in the figure (nearest: sharp pixels of small frames)",
    )  # fmt: skip
    figure.add_argument(
        "--figure-colors", type=int, metavar="N",
        help="reduce the figure to N colours (a smaller PNG; default: full colour)",
    )  # fmt: skip
    args = parser.parse_args()
    if len(args.synthetic_size) > 2:
        parser.error(f"--synthetic-size takes H W or one number, got {args.synthetic_size}")
    if args.figure_colors is not None and not 2 <= args.figure_colors <= 256:
        parser.error(f"--figure-colors must be in [2, 256], got {args.figure_colors}")

    torch.manual_seed(0)
    model = (
        rvoslib.RVOSModel.from_pretrained(args.checkpoint)
        if args.checkpoint
        else rvoslib.create_model("tiny")
    )
    predictor = VideoPredictor(model, clip_len=args.clip_len, overlap=2, size=args.size)
    ground_truth = None
    if args.video:
        video, expressions = args.video, args.text or ["the main object"]
    else:
        size = args.synthetic_size * (3 - len(args.synthetic_size))  # [64] -> [64, 64]
        frames, expression, ground_truth = synthetic_video(args.frames, size, args.seed)
        video, expressions = frames, args.text or [expression]

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # Stream: masks are final frame by frame; memory stays bounded for long videos.
    shown_frames, shown_masks = [], []
    for result in predictor.predict_iter(video, expressions, return_frames=True):
        for index, mask in enumerate(result.masks):
            (out / str(index)).mkdir(exist_ok=True)
            pixels = (mask.to(torch.uint8) * 255).numpy()  # 0/255, original resolution
            Image.fromarray(pixels).save(out / str(index) / f"{result.index:05d}.png")
        shown_frames.append(result.frame)
        shown_masks.append(result.masks[0])
    frames = torch.stack(shown_frames)
    masks = torch.stack(shown_masks)

    name = "synthetic" if args.video is None else Path(args.video).stem
    figure = plot_clip(
        frames,
        masks,
        ground_truth,
        video_id=name,
        expression=expressions[0],
        interpolation=args.interpolation,
    )
    figure.savefig(out / "overlay.png", dpi=80)
    if args.figure_colors:
        with Image.open(out / "overlay.png") as image:
            reduced = image.convert("RGB").quantize(args.figure_colors)
        reduced.save(out / "overlay.png", optimize=True)
    save_animation(frames, out / "overlay.gif", masks, fps=8)
    Image.fromarray(overlay_masks(frames[0], masks[0])).save(out / "first_frame.png")
    print(f"{len(frames)} frames; wrote {out}/overlay.png, overlay.gif and mask PNGs")


if __name__ == "__main__":
    main()
