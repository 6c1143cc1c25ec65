"""Optional dependencies: one flag each, found without importing them (fast start-up)."""

from __future__ import annotations

from importlib.util import find_spec

__all__ = ["HAS_DASK", "HAS_MATPLOTLIB", "HAS_PYARROW", "require"]

HAS_DASK = find_spec("distributed") is not None
HAS_MATPLOTLIB = find_spec("matplotlib") is not None
HAS_PYARROW = find_spec("pyarrow") is not None

_EXTRA = {"HAS_DASK": ("dask.distributed", "dask"), "HAS_MATPLOTLIB": ("matplotlib", "plots"),
          "HAS_PYARROW": ("pyarrow", "parquet")}


def require(flag: str, what: str) -> None:
    """Raise :class:`lensscore.errors.LensscoreError` naming the extra when ``flag`` is false."""
    from .errors import LensscoreError

    if not globals()[flag]:
        pkg, extra = _EXTRA[flag]
        raise LensscoreError(f"{what} needs {pkg}: pip install 'lensscore[{extra}]'")
