"""``rvos demo``: a browser demo of a checkpoint (Gradio; ``pip install "rvoslib[demo]"``).

    rvos demo --checkpoint runs/quickstart/model --port 7860

Open the printed address: pick a sample video or upload one (mp4, gif, or a zip of frames),
type one or more referring expressions (one per line) and get the overlay with a colour ->
expression legend and a zip of per-frame mask PNGs (pixel = expression number). A VOS
checkpoint asks for the first frame's mask (an indexed PNG) instead of expressions. Samples:
``--samples DIR`` (sub-folders of frames, video files, or a DAVIS root), by default the
davis-mini sequences when found ($RVOSLIB_DAVIS_MINI, or ../shared/data/davis-mini next to
the repository).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from rvoslib.cli.convert import CHECKPOINT_HELP, add_original_options, load_model
from rvoslib.cli.options import CommandLine

__all__ = ["command_line", "run"]


def command_line(argv: Sequence[str] = ()) -> CommandLine:
    """The parser of ``rvos demo``."""
    cli = CommandLine("rvos demo", __doc__)
    cli.add("--checkpoint", required=True, help=CHECKPOINT_HELP)
    add_original_options(cli)
    cli.add("--host", default="127.0.0.1", help="address to serve on (0.0.0.0: every interface)")
    cli.add("--port", type=int | None, default=None, help="port (default: Gradio's, 7860 up)")
    cli.add(
        "--samples",
        default=None,
        help="folder of sample videos (default: davis-mini's sequences when found)",
    )
    cli.add(
        "--share",
        type=bool,
        default=False,
        help="also serve through a public Gradio share link (needs internet)",
    )
    cli.add("--device", default=None, help="cpu, cuda, cuda:1 (default: auto)")
    cli.add("--size", type=int, default=360, help="shorter side of the frames fed to the model")
    return cli


def run(args: Any) -> int:
    """Run ``rvos demo`` (serves until interrupted); returns the exit code."""
    from rvoslib._distributed import _pick_device
    from rvoslib.demo import build_demo, default_samples_root, launch_demo, require_gradio

    try:
        require_gradio()  # before the model is loaded
    except ModuleNotFoundError as error:
        raise ValueError(str(error)) from None
    if args.size < 1:
        raise ValueError(f"--size must be >= 1, got {args.size}")
    if args.port is not None and not 0 < args.port < 65536:
        raise ValueError(f"--port must be in [1, 65535], got {args.port}")
    samples = args.samples if args.samples is not None else default_samples_root()
    device = _pick_device(args.device or "auto", 0)
    model = load_model(args)
    demo = build_demo(model, samples, device=device, size=args.size)
    print(f"rvos demo: serving {args.checkpoint} (Ctrl-C stops)", file=sys.stderr)
    launch_demo(demo, host=args.host, port=args.port, share=args.share)
    return 0
