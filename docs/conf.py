"""Sphinx configuration of the skfewrec documentation (``make docs``)."""

import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("MPLBACKEND", "Agg")

import skfewrec  # noqa: E402

project = "skfewrec"
author = "the skfewrec developers"
copyright = "the skfewrec developers"  # noqa: A001
version = release = skfewrec.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "dev", "Thumbs.db", ".DS_Store"]
root_doc = "index"

# the API reference is generated from the docstrings (numpydoc format)
autosummary_generate = True
autodoc_default_options = {"members": False}
autodoc_typehints = "none"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
numpydoc_attributes_as_param_list = True

try:
    import pydata_sphinx_theme  # noqa: F401

    html_theme = "pydata_sphinx_theme"
    html_theme_options = {"navigation_with_keys": False, "show_toc_level": 2}
except ImportError:  # the docs still build with Sphinx's own theme
    html_theme = "alabaster"
html_static_path = ["_static"]
html_title = f"skfewrec {version}"
html_show_sourcelink = False

# "|query|" (a set size) in docstrings is text, not a reST substitution
rst_prolog = r"""
.. |query| replace:: \|query\|
"""

_PARENS = re.compile(r"\(([^()]*)\)")
_TRAILING_UNDERSCORE = re.compile(r"(\w)_(?=[,)\s]|$)")


def _escape_shape_names(app, what, name, obj, options, lines):
    """Escape fitted-attribute names in shapes, ``(n_items_,)``: reST reads ``x_`` as a link."""
    for i, line in enumerate(lines):
        if line.lstrip().startswith((">>>", "...")) or "``" in line:
            continue
        lines[i] = _PARENS.sub(
            lambda m: "(" + _TRAILING_UNDERSCORE.sub(r"\1\\_", m.group(1)) + ")", line
        )


def setup(app):
    app.connect("autodoc-process-docstring", _escape_shape_names)
