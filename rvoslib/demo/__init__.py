"""A browser demo of a checkpoint (``rvos demo``; install with ``pip install "rvoslib[demo]"``).

:func:`build_demo` builds a Gradio app: pick a sample video or upload one (mp4, gif or a zip of
frames), type referring expressions (one per line) or, for a VOS model, upload the first
frame's mask, and get the overlay with a colour -> expression legend, a small preview GIF and a
zip of per-frame mask PNGs. Gradio is imported only when the app is built;
:func:`segment_video` runs without it.

Example:
    >>> import rvoslib
    >>> from rvoslib.demo import build_demo
    >>> demo = build_demo(rvoslib.create_model("tiny"))  # doctest: +SKIP
    >>> demo.launch()  # doctest: +SKIP
"""

from rvoslib.demo.app import (
    API_NAME,
    INSTALL_HINT,
    build_demo,
    launch_demo,
    make_handler,
    require_gradio,
)
from rvoslib.demo.segment import (
    UPLOAD_EXTENSIONS,
    DemoResult,
    default_samples_root,
    find_samples,
    parse_expressions,
    read_upload,
    sample_expressions,
    segment_video,
)

__all__ = [
    "API_NAME",
    "INSTALL_HINT",
    "UPLOAD_EXTENSIONS",
    "DemoResult",
    "build_demo",
    "default_samples_root",
    "find_samples",
    "launch_demo",
    "make_handler",
    "parse_expressions",
    "read_upload",
    "require_gradio",
    "sample_expressions",
    "segment_video",
]
