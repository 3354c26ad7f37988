"""The Gradio app of ``rvos demo``: pick or upload a video, type expressions (or upload the
first frame's mask for a VOS model), get the overlay with its legend and the masks."""

from __future__ import annotations

import inspect
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from rvoslib.demo.segment import (
    UPLOAD_EXTENSIONS,
    find_samples,
    parse_expressions,
    read_upload,
    sample_expressions,
    segment_video,
)

if TYPE_CHECKING:
    import gradio

__all__ = [
    "API_NAME",
    "INSTALL_HINT",
    "build_demo",
    "launch_demo",
    "make_handler",
    "require_gradio",
]

#: The endpoint of the app (``gradio_client.Client(url).predict(..., api_name="/segment")``).
API_NAME = "segment"
#: How to install what the demo needs.
INSTALL_HINT = 'pip install "rvoslib[demo]"'
_ERRORS = (ValueError, TypeError, OSError, KeyError)


def require_gradio() -> Any:
    """The ``gradio`` module.

    Raises:
        ModuleNotFoundError: Gradio is not installed (says to install the ``demo`` extra).
    """
    try:
        import gradio
    except ImportError as error:
        raise ModuleNotFoundError(
            f"the rvoslib demo needs Gradio, which is not installed: {INSTALL_HINT}"
        ) from error
    return gradio


def make_handler(
    model: torch.nn.Module,
    samples: dict[str, Path],
    *,
    device: str | torch.device | None = None,
    size: int = 360,
    work_dir: str | os.PathLike | None = None,
    keep_seconds: float = 3600.0,
) -> Callable[[str | None, str | None, str | None], tuple[str, str, str]]:
    """The function the app's button runs (no Gradio needed; errors are ``ValueError`` with
    a message for the user).

    Args:
        model: The model (referring or VOS).
        samples: Sample videos by name (:func:`~rvoslib.demo.find_samples`).
        device: Where the model runs.
        size: Shorter side of the frames given to the model.
        work_dir: Where each request's files go (default: a new temporary folder).
        keep_seconds: A request's files are removed by the first request this much later
            (Gradio serves its own copies of them, kept up to a day).

    Returns:
        ``handler(sample, upload, query) -> (preview GIF, overlay file, masks zip)`` paths;
        ``query`` is the expressions (one per line) for a referring model, the first-frame
        mask's path for a VOS model; an upload wins over a sample.
    """
    root = Path(work_dir) if work_dir is not None else Path(tempfile.mkdtemp(prefix="rvos-demo-"))
    kind = getattr(getattr(model, "inputs", None), "kind", "text")

    def handler(sample: str | None, upload: str | None, query: str | None) -> tuple[str, str, str]:
        root.mkdir(parents=True, exist_ok=True)
        _remove_old_requests(root, keep_seconds)
        request = Path(tempfile.mkdtemp(prefix="request-", dir=root))
        if upload:
            video: Any = read_upload(upload, request)
        elif sample:
            if sample not in samples:
                raise ValueError(f"sample must be one of {sorted(samples)}, got {sample!r}")
            video = str(samples[sample])
        else:
            raise ValueError("video: pick a sample video or upload one (mp4, gif or a zip)")
        if kind == "first_mask":
            if not query:
                raise ValueError(
                    "this checkpoint is a VOS model: upload the first frame's mask (an indexed "
                    "PNG, pixel = object id)"
                )
            result = segment_video(model, video, request, first_mask=query, device=device,
                                   size=size)  # fmt: skip
        else:
            expressions = parse_expressions(query)
            result = segment_video(model, video, request, expressions=expressions,
                                   device=device, size=size)  # fmt: skip
        return str(result.preview), str(result.overlay), str(result.masks)

    return handler


def _remove_old_requests(root: Path, keep_seconds: float) -> None:
    """Remove the request folders under ``root`` older than ``keep_seconds``."""
    import shutil
    import time

    limit = time.time() - keep_seconds
    for folder in root.glob("request-*"):
        if folder.is_dir() and folder.stat().st_mtime < limit:
            shutil.rmtree(folder, ignore_errors=True)


def build_demo(
    model: torch.nn.Module,
    samples: str | os.PathLike | dict[str, Path] | None = None,
    *,
    device: str | torch.device | None = None,
    size: int = 360,
    title: str = "rvoslib: referring video object segmentation",
) -> gradio.Blocks:
    """The demo's Gradio app (not launched: ``build_demo(model).launch()``).

    Args:
        model: A referring model (expressions are typed) or a VOS model (the first frame's
            mask is uploaded instead).
        samples: A folder of sample videos (sub-folders of frames, video files, or a DAVIS
            root), or samples by name; ``None``: none.
        device: Where the model runs (``None``: CUDA when available).
        size: Shorter side of the frames given to the model.
        title: The page's title.

    Returns:
        A ``gradio.Blocks`` whose button runs :func:`make_handler`'s handler, also at the API
        endpoint ``/segment`` (sample name, uploaded file, expressions or mask file).

    Raises:
        ModuleNotFoundError: Gradio is missing (names the ``demo`` extra).
    """
    gr = require_gradio()
    found = dict(samples) if isinstance(samples, dict) else find_samples(samples)
    handler = make_handler(model, found, device=device, size=size)
    vos = getattr(getattr(model, "inputs", None), "kind", "text") == "first_mask"

    def run(sample: str | None, upload: str | None, query: str | None) -> tuple[str, str, str]:
        try:
            return handler(sample or None, upload or None, query or None)
        except _ERRORS as error:
            raise gr.Error(str(error.args[0] if isinstance(error, KeyError) else error)) from None

    options = {"title": title}
    if "delete_cache" in inspect.signature(gr.Blocks).parameters:  # not in early Gradio 4
        options["delete_cache"] = (3600, 86400)  # its copies of results: kept up to a day
    with gr.Blocks(**options) as demo:
        gr.Markdown(f"## {title}\n" + _INTRO[vos])
        with gr.Row():
            with gr.Column():
                sample = gr.Dropdown(
                    choices=list(found), value=None, label="Sample video", allow_custom_value=False
                )
                upload = gr.File(
                    label="...or upload a video (mp4, gif, or a zip of frames)",
                    file_types=list(UPLOAD_EXTENSIONS),
                    type="filepath",
                )
                if vos:
                    query = gr.File(
                        label="First-frame mask (indexed PNG: pixel = object id)",
                        file_types=[".png"],
                        type="filepath",
                    )
                else:
                    query = gr.Textbox(
                        label="Expressions (one per line)",
                        lines=3,
                        placeholder="a black swan swimming in a pond",
                    )
                button = gr.Button("Segment", variant="primary")
            with gr.Column():
                preview = gr.Image(
                    label="Overlay (preview)", type="filepath", show_label=False
                )  # the label badge would hide the legend
                overlay = gr.File(label="Overlay video (with the legend)")
                masks = gr.File(label="Masks (zip: one PNG per frame, pixel = expression number)")
        button.click(run, [sample, upload, query], [preview, overlay, masks], api_name=API_NAME)
        if not vos:

            def fill(name: str | None) -> str:
                return "\n".join(sample_expressions(found[name])) if name in found else ""

            sample.change(fill, sample, query, api_name="sample_expressions")
    return demo


_INTRO = {
    False: "Pick a sample video or upload one, type one or more referring expressions (one per "
    "line) and press **Segment**: the overlay shows each expression's mask in the colour of "
    "its legend entry.",
    True: "This checkpoint is a VOS model: pick a sample video or upload one, upload the mask "
    "of its first frame (an indexed PNG, pixel = object id) and press **Segment**.",
}


def launch_demo(
    demo: gradio.Blocks,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    share: bool = False,
    block: bool = True,
) -> str:
    """Serve ``demo`` on ``host:port`` (``None``: Gradio picks a free port); returns its URL.

    With ``block`` the call returns when the server stops (Ctrl-C).
    """
    demo.queue()
    _, url, _ = demo.launch(
        server_name=host,
        server_port=port,
        share=share,
        prevent_thread_lock=not block,
        quiet=not block,
    )
    return url
