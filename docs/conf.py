"""Sphinx configuration of the pulse-trio documentation.

Build it with ``nox -s docs``, or directly with
``sphinx-build -W --keep-going -b html docs docs/_build/html``.
"""

from importlib.metadata import version as package_version

project = "pulse-trio"
author = "the pulse-trio developers"
copyright = "2026, the pulse-trio developers"
release = package_version("pulse-trio")
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
]

source_suffix = {".md": "markdown"}
exclude_patterns = ["_build"]

# The docs build must not fetch anything, so there is no intersphinx
# mapping, and references to trio or the standard library stay plain text.
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented"
autodoc_default_options = {"members": True, "show-inheritance": True}

napoleon_google_docstring = True
napoleon_numpy_docstring = False

html_theme = "furo"
html_title = "pulse-trio"
