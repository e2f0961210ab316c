"""Run an exported graph (``fabricnms export``) with onnxruntime as a drop-in detector.

:class:`OnnxDetector` maps a ``[B, 3, H, W]`` float RGB [0, 1] batch to the same
:class:`~fabricnms.model.types.DenseOutput` as the torch detector (boxes xyxy pixels of the
input): the graph gives the network tensors, the location grid and box decoding are
:func:`~fabricnms.model.detector.grid_locations` and
:func:`~fabricnms.model.detector.dense_output`. Without masks the graph's mask outputs are cut
off before the session is built, so the mask branch does not run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from fabricnms.engine.export import INSTALL_HINT, META_FORMAT, meta_path_for
from fabricnms.engine.shift import STATS_KEY
from fabricnms.errors import FabricError
from fabricnms.model.detector import MASK_OUTPUTS, NETWORK_OUTPUTS, dense_output, grid_locations
from fabricnms.model.types import DenseOutput


class OnnxDetector(nn.Module):
    """An onnxruntime CPU session behind the detector's call interface.

    Args:
        path: the ``.onnx`` file; ``network``: the ``network`` block of its metadata;
        masks: also return the mask outputs (the graph must have them);
        threads: onnxruntime intra-op threads.
    """

    def __init__(self, path: Path, network: dict[str, Any], masks: bool, threads: int) -> None:
        super().__init__()
        try:
            import onnxruntime as ort
        except ImportError:
            raise FabricError(f"{path}: running an ONNX model needs {INSTALL_HINT}") from None
        self.outputs = list(NETWORK_OUTPUTS + (MASK_OUTPUTS if masks else ()))
        self.strides = tuple(int(s) for s in network["strides"])
        self.proto_stride = int(network["proto_stride"]) if masks else 0
        self.input_size = network.get("input_size")
        self.dtype = np.float16 if network.get("input_dtype") == "float16" else np.float32
        graph: bytes | str = str(path)
        if not masks and network.get("masks"):
            graph = _without_mask_outputs(path, network["input"], self.outputs)
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, threads)
        options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
            raise FabricError(f"{path}: onnxruntime cannot load it ({first})") from None
        self.input_name = network["input"]
        self._grid: dict[tuple[int, int], tuple[Tensor, Tensor]] = {}

    def forward(self, images: Tensor) -> DenseOutput:
        """Dense predictions for ``images [B, 3, H, W]`` float RGB in [0, 1] (CPU)."""
        h, w = int(images.shape[2]), int(images.shape[3])
        if self.input_size is not None and [h, w] != list(self.input_size):
            raise FabricError(
                f"the ONNX model was exported for {self.input_size[1]}x{self.input_size[0]} "
                f"network inputs, this frame needs {w}x{h}: export with --dynamic "
                "(or with --tile matching the frames)"
            )
        batch = images.detach().cpu().numpy().astype(self.dtype, copy=False)
        arrays = self.session.run(self.outputs, {self.input_name: batch})
        tensors = {
            k: torch.from_numpy(a).float() for k, a in zip(self.outputs, arrays, strict=True)
        }
        if (h, w) not in self._grid:
            self._grid = {(h, w): grid_locations(h, w, self.strides)}
        points, strides = self._grid[(h, w)]
        return dense_output(tensors, points, strides, (h, w), self.proto_stride)


def _without_mask_outputs(path: Path, input_name: str, outputs: list[str]) -> bytes:
    """The graph at ``path`` cut down to ``outputs`` (its mask branch removed), serialised."""
    import onnx
    from onnx.utils import Extractor

    sub = Extractor(onnx.load(str(path))).extract_model([input_name], outputs)
    return sub.SerializeToString()


def read_onnx_meta(path: Path) -> dict[str, Any]:
    """The metadata written beside ``path`` by ``fabricnms export``; one-line errors."""
    meta_path = meta_path_for(path)
    if not path.is_file():
        raise FabricError(f"{path}: ONNX model file not found")
    if not meta_path.is_file():
        raise FabricError(
            f"{path}: no metadata {meta_path.name} beside it (export with `fabricnms export`)"
        )
    try:
        doc = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FabricError(f"{meta_path}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != META_FORMAT:
        raise FabricError(f"{meta_path}: not fabricnms export metadata (no '{META_FORMAT}')")
    return doc


def load_onnx(
    path: Path, device: torch.device, masks: bool, threads: int
) -> tuple[OnnxDetector, dict[str, Any]]:
    """``(detector, meta)`` for an exported graph; ``meta`` is the checkpoint metadata it was
    exported with (``class_names``, configs, operating point, fabric statistics ...) plus
    ``path`` and ``network``. The graph returns no neck features, so predict scores no
    ``fabric_shift`` with it (the statistics stay in the metadata for other runtimes)."""
    if device.type != "cpu":
        raise FabricError(f"{path}: ONNX models run on the CPU here (use --device cpu)")
    doc = read_onnx_meta(path)
    network = doc["network"]
    if masks and not network.get("masks"):
        raise FabricError(
            f"{path}: the exported network has no mask branch; export a checkpoint trained "
            "with --set masks=true"
        )
    model = OnnxDetector(path, network, masks, threads)
    meta = {**doc["checkpoint"], "path": str(path.resolve()), "network": network}
    stats = meta.get(STATS_KEY)
    if isinstance(stats, dict):  # the JSON lists back to the tensors the checkpoint held
        meta[STATS_KEY] = {
            k: torch.tensor(v) if isinstance(v, list) else v for k, v in stats.items()
        }
    return model, meta
