"""Sphinx configuration: the markdown pages (MyST) plus an API reference built from the
docstrings of the public API (autodoc), and the commands' flags from their parsers
(sphinx-argparse).  ``nox -s docs`` builds it with warnings as errors."""

from __future__ import annotations

import trigear

project = "trigear"
author = "the trigear authors"
copyright = "the trigear authors"  # noqa: A001
version = release = trigear.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinxarg.ext",
]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]

# Headings get anchors so pages can link to sections (durability.md#server-throughput...).
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_format = "short"
autodoc_preserve_defaults = True

html_theme = "furo"
html_title = f"trigear {release}"
