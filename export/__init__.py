"""Keras -> ONNX export of lensscore models, with parity proven on every export (needs [train]).

The names below are imported on first use, not with the package: ``python -m export.stamp``
and the other commands then start without onnx and TensorFlow, and say in one line what is
missing where a command needs them (:func:`train._extra.run`)."""

__all__ = ["export_model", "ExportError", "ExportResult", "OPSET"]


def __getattr__(name: str):
    if name in __all__:
        from . import convert

        return getattr(convert, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
