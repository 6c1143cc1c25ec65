"""Keras -> ONNX export of lensscore models, with parity proven on every export (needs [train])."""

from .convert import OPSET, ExportError, ExportResult, export_model

__all__ = ["export_model", "ExportError", "ExportResult", "OPSET"]
