"""``rvos predict``: segment referred objects in a video and write mask PNGs (and overlays).

Output layout (``--out DIR``)::

    DIR/<expression index>/<frame name>.png     one mask per frame, original resolution
    DIR/expressions.json                        expression index -> text, video, frame names
    DIR/overlay/<frame name>.png, overlay.gif   with --overlay (all expressions, one colour each)

Masks are written as soon as each frame is final (bounded memory); only the overlay animation
keeps its frames until the end.

``--format davis`` writes indexed PNGs with the DAVIS palette (object 1 = dark red);
``--format ytvos`` writes greyscale PNGs with values 0/255.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

import numpy as np

__all__ = ["add_parser", "run"]

FORMATS = ("davis", "ytvos")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``rvos predict``."""
    parser = subparsers.add_parser(
        "predict",
        help="segment referred objects in a video",
        description="Segment the objects referred to by --text in every frame of --video.",
    )
    parser.add_argument("--checkpoint", required=True, help="model folder (save_pretrained)")
    parser.add_argument("--video", required=True, help="frame folder or video file")
    parser.add_argument(
        "--text", action="append", required=True, help="referring expression (repeatable)"
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--overlay", action="store_true", help="also write overlay PNGs + GIF")
    parser.add_argument("--overlay-format", choices=("gif", "mp4"), default="gif")
    parser.add_argument("--format", choices=FORMATS, default="davis", help="mask PNG format")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: auto)")
    parser.add_argument("--clip-len", type=int, default=8)
    parser.add_argument("--overlap", type=int, default=2)
    parser.add_argument("--size", type=int, default=360, help="model input shorter side")
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--workers", type=int, default=4, help="decoding threads")
    parser.add_argument("--fps", type=float, default=None, help="overlay animation fps")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(func=run)
    return parser


def _png_bytes(mask: np.ndarray, fmt: str) -> bytes:
    from PIL import Image

    from rvoslib.viz import davis_colors

    if fmt == "davis":
        image = Image.fromarray(mask.astype(np.uint8), mode="P")
        image.putpalette(davis_colors().reshape(-1).tolist())
    else:
        image = Image.fromarray(mask.astype(np.uint8) * 255, mode="L")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False, compress_level=1)
    return buffer.getvalue()


def run(args: argparse.Namespace) -> int:
    """Run ``rvos predict``; returns the exit code."""
    from tqdm import tqdm

    from rvoslib._io import atomic_write_bytes, atomic_write_text
    from rvoslib.inference import VideoPredictor, check_expressions
    from rvoslib.models import RVOSModel
    from rvoslib.video_io import FrameFolderSource

    expressions = check_expressions(args.text)
    if args.format not in FORMATS:
        raise ValueError(f"--format must be one of {FORMATS}, got {args.format!r}")
    model = RVOSModel.from_pretrained(args.checkpoint)
    predictor = VideoPredictor(
        model,
        device=args.device,
        clip_len=args.clip_len,
        overlap=args.overlap,
        size=args.size,
        threshold=args.threshold,
        num_workers=args.workers,
    )
    source = predictor.open(args.video)
    folder = isinstance(source, FrameFolderSource)
    names = [path.stem for path in source.files] if folder else None
    out = Path(args.out)
    overlay_frames: list[np.ndarray] = []
    started = time.perf_counter()
    count = 0
    with tqdm(
        total=source.num_frames, unit="frame", desc=source.name, disable=args.no_progress
    ) as progress:
        for result in predictor.predict_iter(source, expressions, return_frames=args.overlay):
            name = names[result.index] if names else f"{result.index:05d}"
            masks = result.masks.numpy()
            for expression_index, mask in enumerate(masks):
                atomic_write_bytes(
                    out / str(expression_index) / f"{name}.png", _png_bytes(mask, args.format)
                )
            if args.overlay:
                from rvoslib.viz import overlay_masks

                image = overlay_masks(result.frame, result.masks.unsqueeze(1))
                atomic_write_bytes(out / "overlay" / f"{name}.png", _rgb_png(image))
                overlay_frames.append(image)
            count += 1
            progress.update(1)
    elapsed = time.perf_counter() - started
    if args.overlay and overlay_frames:
        from rvoslib.viz import save_animation

        fps = args.fps or source.fps or 10.0
        save_animation(np.stack(overlay_frames), out / f"overlay.{args.overlay_format}", fps=fps)
    index = {
        "video": str(args.video),
        "checkpoint": str(args.checkpoint),
        "format": args.format,
        "expressions": dict(enumerate(expressions)),
        "frames": count,
        "height": source.height,
        "width": source.width,
    }
    atomic_write_text(out / "expressions.json", json.dumps(index, indent=2))
    print(
        f"wrote {count} frames x {len(expressions)} expression(s) to {out} "
        f"({count / max(elapsed, 1e-9):.1f} frames/s)",
        file=sys.stderr,
    )
    return 0


def _rgb_png(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()
