"""``rvos predict``: segment objects in a video and write mask PNGs (and overlays).

Referring models take ``--text`` (repeatable); VOS models take ``--mask``, the first frame's
objects as an indexed PNG (pixel = object id), and write one indexed PNG per frame with the
objects merged by score, as the official evaluations read them.

Output layout (``--out DIR``, built under a temporary name and moved into place when complete;
a non-empty ``DIR`` is refused unless ``--overwrite``)::

    DIR/<expression index>/<frame name>.png     --text: one mask per frame, original resolution
    DIR/masks/<frame name>.png                  --mask: object ids per frame
    DIR/expressions.json                        what was predicted, video, frame names
    DIR/overlay/<frame name>.png, overlay.gif   with --overlay (streamed: no frame is kept)

``--format davis`` writes indexed PNGs with the DAVIS palette (object 1 = dark red);
``--format ytvos`` writes greyscale PNGs with values 0/255.

``--inference-protocol NAME`` runs a referring model as a published system's inference script
does (``mttr``, ``referformer-ytvos``, ``referformer-davis``, ``soc``, ``soc-davis``: its
resize rule, one query per video or per clip, its upsampling and threshold;
``rvoslib.inference_protocols``); ``--clip-len``, ``--overlap``, ``--size`` and
``--threshold`` are then not used. The default is the checkpoint's own (a converted published
checkpoint's system), else ``rvoslib`` (overlapping clips, averaged).
"""

from __future__ import annotations

import io
import json
import sys
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from rvoslib.cli.convert import CHECKPOINT_HELP, add_original_options, load_model
from rvoslib.cli.options import CommandLine

__all__ = ["add_inference_protocol_option", "command_line", "run"]

FORMATS = ("davis", "ytvos")
#: The option giving each kind of model input (``model.inputs.kind``).
_QUERY_OPTION = {"text": "--text EXPRESSION", "first_mask": "--mask FIRST_FRAME.png"}


def command_line(argv: Sequence[str] = ()) -> CommandLine:
    """The parser of ``rvos predict``."""
    cli = CommandLine("rvos predict", __doc__)
    cli.add("--checkpoint", required=True, help=CHECKPOINT_HELP)
    add_original_options(cli)
    cli.add("--video", required=True, help="a frame folder or a video file")
    query = cli.mutually_exclusive(required=True)
    cli.add(
        "--text",
        group=query,
        action="append",
        help="a referring expression, for referring models (repeatable)",
    )
    cli.add(
        "--mask",
        group=query,
        help="the first frame's objects as an indexed PNG (pixel = object id), for VOS models",
    )
    cli.add("--out", required=True, help="output folder")
    cli.add("--overwrite", action="store_true", help="replace a non-empty --out")
    cli.add("--overlay", action="store_true", help="also write overlay PNGs and an animation")
    cli.add(
        "--overlay-format",
        choices=("auto", "gif", "mp4"),
        default="auto",
        help="overlay animation format; auto: mp4 for videos of more than 100 frames (when an "
        "mp4 writer is available), else gif",
    )
    cli.add(
        "--format",
        choices=FORMATS,
        default="davis",
        help="mask PNGs: davis (indexed, DAVIS palette) or ytvos (greyscale 0/255)",
    )
    cli.add("--device", default=None, help="cpu, cuda, cuda:1 (default: auto)")
    cli.add("--clip-len", type=int, default=8, help="frames per forward pass")
    cli.add("--overlap", type=int, default=2, help="frames shared by consecutive clips")
    cli.add("--size", type=int, default=360, help="shorter side of the frames fed to the model")
    cli.add("--threshold", type=float, default=0.5, help="probability threshold of the masks")
    add_inference_protocol_option(cli)
    cli.add("--workers", type=int, default=4, help="decoding and writing threads")
    cli.add(
        "--skip-corrupt-frames",
        action="store_true",
        help="leave truncated or corrupt frames of a frame folder out, with a warning naming "
        "each (default: such a frame is an error naming it)",
    )
    cli.add(
        "--fps",
        type=float | None,
        default=None,
        help="overlay animation fps (default: the video's)",
    )
    cli.add("--no-progress", action="store_true", help="hide the progress bar")
    return cli


def add_inference_protocol_option(cli: CommandLine) -> None:
    """``--inference-protocol NAME`` (a registered inference protocol; default: the model's)."""
    from rvoslib.inference_protocols import INFERENCE_PROTOCOLS

    cli.add(
        "--inference-protocol",
        choices=tuple(INFERENCE_PROTOCOLS.names()),
        default=None,
        help="how the video is run: a published system's inference script (mttr, "
        "referformer-ytvos, referformer-davis, soc, soc-davis: their resize rule, one query per "
        "video or per clip, their upsampling; --clip-len, --overlap, --size and --threshold are "
        "then unused) or rvoslib (overlapping clips averaged); default: the checkpoint's own, "
        "else rvoslib",
    )


def _png_bytes(mask: np.ndarray, fmt: str) -> bytes:
    from PIL import Image

    from rvoslib._palette import davis_palette

    if fmt == "davis":
        image = Image.fromarray(mask.astype(np.uint8), mode="P")
        image.putpalette(davis_palette().reshape(-1).tolist())
    else:
        image = Image.fromarray((mask > 0).astype(np.uint8) * 255, mode="L")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False, compress_level=1)
    return buffer.getvalue()


class _Writer:
    """PNG encoding and writing in a thread pool, with a bounded number of pending frames."""

    def __init__(self, workers: int) -> None:
        self.pool = ThreadPoolExecutor(max(1, workers))
        self.pending: list[Future] = []
        self.limit = 4 * max(1, workers)

    def write(self, path: Path, encode, *args) -> None:
        def job() -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(encode(*args))

        self.pending.append(self.pool.submit(job))
        if len(self.pending) >= self.limit:
            self.pending.pop(0).result()

    def close(self) -> None:
        for future in self.pending:
            future.result()
        self.pool.shutdown()


def run(args: Any) -> int:
    """Run ``rvos predict``; returns the exit code."""
    from rvoslib._distributed import _pick_device
    from rvoslib._io import atomic_directory
    from rvoslib.inference import check_expressions

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()) and not args.overwrite:
        raise ValueError(
            f"--out {str(out)!r} is not empty; pass --overwrite to replace it (its files are "
            "kept until the new predictions are complete)"
        )
    if not 0.0 < args.threshold < 1.0:
        raise ValueError(f"--threshold must be in (0, 1), got {args.threshold}")
    expressions = check_expressions(args.text) if args.text else None
    if expressions is None and getattr(args, "inference_protocol", None) is not None:
        raise ValueError(
            f"--inference-protocol {args.inference_protocol} is for referring models (--text); "
            "a VOS model given --mask has no inference protocol"
        )
    device = _pick_device(args.device or "auto", 0)
    model = load_model(args)
    given = "first_mask" if args.mask is not None else "text"
    if model.inputs.kind != given:
        raise ValueError(
            f"the checkpoint's model takes {model.inputs.kind!r} inputs "
            f"({_QUERY_OPTION.get(model.inputs.kind, '?')}), got {_QUERY_OPTION[given]}"
        )
    started = time.perf_counter()
    with atomic_directory(out) as folder:
        if expressions is not None:
            count, index = _predict_text(model, device, expressions, folder, args)
        else:
            count, index = _predict_mask(model, device, folder, args)
        (folder / "expressions.json").write_text(json.dumps(index, indent=2))
    elapsed = time.perf_counter() - started
    print(
        f"wrote {count} frames to {out} ({count / max(elapsed, 1e-9):.1f} frames/s)",
        file=sys.stderr,
    )
    return 0


def _predict_text(model, device, expressions, folder: Path, args) -> tuple[int, dict]:
    from tqdm import tqdm

    from rvoslib.animation import AnimationWriter
    from rvoslib.inference import VideoPredictor
    from rvoslib.video_io import FrameFolderSource
    from rvoslib.viz import overlay_masks

    predictor = VideoPredictor(
        model,
        device=device,
        clip_len=args.clip_len,
        overlap=args.overlap,
        size=args.size,
        threshold=args.threshold,
        num_workers=args.workers,
        on_corrupt=_on_corrupt(args),
        protocol=getattr(args, "inference_protocol", None),
    )
    source = predictor.open(args.video)
    names = [p.stem for p in source.files] if isinstance(source, FrameFolderSource) else None
    writer = _Writer(args.workers)
    animation = None
    if args.overlay:
        fps = args.fps or source.fps or 10.0
        animation = AnimationWriter(folder / f"overlay.{_overlay_format(args, source)}", fps=fps)
    count = 0
    bar = tqdm(total=source.num_frames, unit="frame", desc=source.name, disable=args.no_progress)
    with bar:
        for result in predictor.predict_iter(source, expressions, return_frames=args.overlay):
            name = names[result.index] if names else f"{result.index:05d}"
            for number, mask in enumerate(result.masks.numpy()):
                writer.write(folder / str(number) / f"{name}.png", _png_bytes, mask, args.format)
            if animation is not None:
                image = overlay_masks(result.frame, result.masks.unsqueeze(1), labels=expressions)
                writer.write(folder / "overlay" / f"{name}.png", _rgb_png, image)
                animation.add(image)
            count += 1
            bar.update(1)
    writer.close()
    if animation is not None:
        animation.close()
    index = {
        "video": str(args.video),
        "checkpoint": str(args.checkpoint),
        "format": args.format,
        "expressions": dict(enumerate(expressions)),
        "inference_protocol": predictor.protocol.name,
        "frames": count,
        "height": source.height,
        "width": source.width,
    }
    return count, index


def _overlay_format(args: Any, source: Any) -> str:
    """``--overlay-format``, with ``auto`` chosen by the video's length."""
    from rvoslib.animation import choose_overlay_format

    if args.overlay_format != "auto":
        return args.overlay_format
    return choose_overlay_format(source.num_frames or 0)


def _predict_mask(model, device, folder: Path, args) -> tuple[int, dict]:
    from rvoslib.animation import AnimationWriter
    from rvoslib.video_io import FrameFolderSource, open_video
    from rvoslib.viz import overlay_masks
    from rvoslib.vos_inference import read_first_mask, segment_from_first_mask

    first = read_first_mask(args.mask)
    source = open_video(args.video, on_corrupt=_on_corrupt(args))
    names = [p.stem for p in source.files] if isinstance(source, FrameFolderSource) else None
    ids = segment_from_first_mask(
        model, source, first, size=args.size, device=device, threshold=args.threshold
    ).numpy()
    writer = _Writer(args.workers)
    animation = None
    labels = [f"object {k}" for k in range(1, int(first.max()) + 1)]
    if args.overlay:
        fps = args.fps or source.fps or 10.0
        animation = AnimationWriter(folder / f"overlay.{_overlay_format(args, source)}", fps=fps)
    frames = iter(source) if args.overlay else None
    for index, id_map in enumerate(ids):
        name = names[index] if names else f"{index:05d}"
        writer.write(folder / "masks" / f"{name}.png", _png_bytes, id_map, "davis")
        if animation is not None:
            image = overlay_masks(next(frames), id_map[None], labels=labels)
            writer.write(folder / "overlay" / f"{name}.png", _rgb_png, image)
            animation.add(image)
    writer.close()
    if animation is not None:
        animation.close()
    objects = sorted(int(v) for v in np.unique(first) if v)
    index = {
        "video": str(args.video),
        "checkpoint": str(args.checkpoint),
        "mask": str(args.mask),
        "objects": objects,
        "frames": len(ids),
        "height": int(ids.shape[1]),
        "width": int(ids.shape[2]),
    }
    return len(ids), index


def _on_corrupt(args: Any) -> str:
    """``on_corrupt`` of the frame readers: ``"skip"`` with ``--skip-corrupt-frames``."""
    return "skip" if getattr(args, "skip_corrupt_frames", False) else "error"


def _rgb_png(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()
