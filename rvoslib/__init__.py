"""rvoslib: composable, tested PyTorch parts for referring video object segmentation."""

from rvoslib.version import __version__

__all__ = ["__version__"]
