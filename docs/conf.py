"""Sphinx configuration for the rvoslib documentation."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

from rvoslib.version import __version__

project = "rvoslib"
author = "rvoslib developers"
copyright = "2026, rvoslib developers"
version = release = __version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",  # the summary table of the top-level package (no generated pages)
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "myst_parser",  # Markdown: CHANGELOG.md is rendered on the changelog page
]
myst_heading_anchors = 3
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": False}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
autosummary_generate = False
templates_path: list[str] = []
exclude_patterns = ["_build"]
html_theme = "furo"  # fits code blocks; light and dark
html_title = f"rvoslib {release}"
html_static_path = ["_static"]
nitpicky = False
