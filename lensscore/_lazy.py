"""Modules imported on first use (``lensscore scan`` overlaps loading the model with them)."""

from __future__ import annotations

import importlib


class LazyModule:
    """A stand-in for ``import NAME`` that imports NAME when an attribute is first read."""

    def __init__(self, name: str):
        self._name = name
        self._module = None

    def _load(self):
        if self._module is None:
            self._module = importlib.import_module(self._name)
        return self._module

    def __getattr__(self, attr):
        return getattr(self._load(), attr)

    def __repr__(self):
        return f"<lazy module {self._name}{' (loaded)' if self._module else ''}>"
