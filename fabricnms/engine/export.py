"""``fabricnms export``: a checkpoint's network as an ONNX graph, its metadata beside it.

``model.onnx`` holds the folded inference network (:func:`~fabricnms.model.fuse.inference_copy`
with its mask branch when the checkpoint has one): input ``images`` ``[B, 3, H, W]`` RGB in
[0, 1] (float32, float16 with ``half``), outputs
:meth:`~fabricnms.model.detector.Detector.network_outputs` in
:data:`~fabricnms.model.detector.NETWORK_OUTPUTS` (+ ``MASK_OUTPUTS``) order; the batch is
always dynamic, ``H`` and ``W`` are ``tile`` rounded up to 32 unless ``dynamic`` (any
multiples of 32). Location grids, box decoding, tiling and suppression stay in Python
(:mod:`fabricnms.engine.onnx_backend`), so ``predict --weights model.onnx`` post-processes
exactly as with the checkpoint.

``model.json`` (same stem) carries what predict needs and everything else the checkpoint
carried besides weights and training state (class names, category ids, configs, metrics and
whatever keys later versions add, such as an operating point or fabric statistics), tensors as
lists, plus a ``network`` block: input size, strides, prototype stride, outputs, dtype.
"""

from __future__ import annotations

import io
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from fabricnms import __version__
from fabricnms.errors import FabricError
from fabricnms.io import atomic_write_bytes, atomic_write_json
from fabricnms.log import get_logger
from fabricnms.model.detector import MASK_OUTPUTS, NETWORK_OUTPUTS, Detector

log = get_logger("export")

EXPORT_FORMATS = ("onnx",)
META_FORMAT = "fabricnms-onnx"
META_FORMAT_VERSION = 1
INSTALL_HINT = 'pip install "fabricnms[export]" (or: pip install onnx onnxruntime)'
#: ONNX opset of the exported graph.
OPSET = 17


@dataclass
class ExportResult:
    """Where the export went and the metadata written beside it."""

    model: Path
    meta_path: Path
    meta: dict[str, Any]


class _GraphOutputs(nn.Module):
    """The detector's :meth:`network_outputs` as a tuple (what an ONNX graph returns)."""

    def __init__(self, model: Detector) -> None:
        super().__init__()
        self.model = model
        self.keys = NETWORK_OUTPUTS + (MASK_OUTPUTS if model.mask_branch is not None else ())

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        out = self.model.network_outputs(images)
        return tuple(out[k] for k in self.keys)


def meta_path_for(model_path: str | Path) -> Path:
    """``model.onnx`` -> ``model.json`` (the metadata beside an exported graph)."""
    return Path(model_path).with_suffix(".json")


def json_safe(value: Any) -> Any:
    """Checkpoint metadata as JSON: tensors and arrays to (nested) lists, paths to strings."""
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return value.tolist()
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def export_model(
    weights: str | Path,
    out: str | Path | None = None,
    fmt: str = "onnx",
    dynamic: bool = False,
    half: bool = False,
    tile: int = 1024,
) -> ExportResult:
    """Export checkpoint ``weights`` to ``out`` (default: ``weights`` with ``.onnx``).

    One-line :class:`FabricError` for an unknown ``fmt``, a file that is not a fabricnms
    checkpoint, or a missing ``onnx`` package (with the install hint). Traced with the
    TorchScript exporter (``dynamo=False``): a few seconds, where the dynamo exporter took ten
    times longer for the same graph and the same onnxruntime outputs.
    """
    if fmt not in EXPORT_FORMATS:
        raise FabricError(f"--format {fmt!r}: expected one of {', '.join(EXPORT_FORMATS)}")
    from fabricnms.engine.checkpoint import load_detector
    from fabricnms.model.fuse import inference_copy

    weights = Path(weights)
    if weights.suffix.lower() == ".onnx":
        raise FabricError(f"{weights}: already an ONNX export; pass the .pt checkpoint")
    model, meta = load_detector(weights, "cpu")
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise FabricError(f"export to ONNX needs the export extra: {INSTALL_HINT}") from None
    masks = model.mask_branch is not None
    net = inference_copy(model, masks=masks)
    dtype = torch.float16 if half else torch.float32
    net = _GraphOutputs(net.to(dtype)).eval()
    side = -(-tile // 32) * 32
    example = torch.rand(1, 3, side, side, dtype=dtype)
    axes = {0: "batch", 2: "height", 3: "width"} if dynamic else {0: "batch"}
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # the TorchScript exporter's notes on constant folding
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            (example,),
            buffer,
            dynamo=False,
            input_names=["images"],
            output_names=list(net.keys),
            dynamic_axes={"images": axes},
            opset_version=OPSET,
        )
    out_path = Path(out) if out is not None else weights.with_suffix(".onnx")
    network = {
        "input": "images",
        "input_dtype": "float16" if half else "float32",
        "input_size": None if dynamic else [side, side],
        "dynamic": dynamic,
        "outputs": list(net.keys),
        "strides": list(model.strides),
        "proto_stride": model.mask_branch.stride if masks else 0,
        "masks": masks,
        "tile": tile,
    }
    checkpoint = {k: v for k, v in meta.items() if k not in ("path", "format", "format_version")}
    doc = {
        "format": META_FORMAT,
        "format_version": META_FORMAT_VERSION,
        "fabricnms_version": __version__,
        "source_checkpoint": str(weights.resolve()),
        "network": network,
        "checkpoint": json_safe(checkpoint),
    }
    json.dumps(doc)  # fail before writing anything when some metadata is not JSON
    atomic_write_bytes(out_path, buffer.getvalue())
    meta_path = meta_path_for(out_path)
    atomic_write_json(meta_path, doc)
    return ExportResult(out_path, meta_path, doc)
