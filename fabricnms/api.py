"""The Python API, mirroring the CLI: ``load`` a model, then ``predict``, ``eval``, ``export``.

Example::

    import fabricnms

    model = fabricnms.load("default")              # the shipped model, a .pt or an .onnx
    results = model.predict(["frame.jpg", rgb])    # paths and [H, W, 3] uint8 RGB arrays
    for r in results:
        print(r.source, r.class_names, r.scores, r.boxes)  # boxes xyxy frame pixels

Detection runs exactly as in ``fabricnms predict`` (overlapping tiles, one DNMS per frame,
the folded inference network; see :func:`fabricnms.engine.tiling.detect_frames`); ``eval`` is
:func:`fabricnms.engine.eval_run.run_eval` and ``export`` :func:`fabricnms.engine.export.
export_model`, so the API and the CLI give the same numbers.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from fabricnms.config import EDGE_BAND
from fabricnms.errors import FabricError
from fabricnms.model.mask_head import MaskCrops

Frame = str | Path | np.ndarray


@dataclass(frozen=True)
class FrameResult:
    """Detections of one frame.

    source: the path given, or ``"array[i]"`` for the ``i``-th frame given as an array.
    width / height: frame size in pixels. boxes: ``[K, 4]`` float32 xyxy frame pixels.
    scores: ``[K]`` float32 in [0, 1]. class_ids: ``[K]`` int64 0-based. class_names: ``K``
    names. masks: the binary masks as crops placed in the frame (with ``masks=True``; see
    :meth:`mask`), else ``None``. fabric_shift: how far the frame's fabric lies from the
    training fabric (:mod:`fabricnms.engine.shift`, as ``predict`` scores it), ``None`` while
    the checkpoint carries no calibrated fabric statistics (``fabricnms calibrate``) and with
    an ONNX model (its graph does not return the neck features). cloth: where the frame shows
    the fabric's edge, ``{"box", "inspected", "edges"}`` as in ``images.json``
    (:mod:`fabricnms.data.cloth`), else ``None``.
    """

    source: str
    width: int
    height: int
    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    class_names: list[str]
    masks: MaskCrops | None = None
    fabric_shift: float | None = None
    cloth: dict[str, Any] | None = None

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def mask(self, k: int) -> np.ndarray:
        """The ``[height, width]`` bool mask of detection ``k`` (needs ``masks=True``)."""
        if self.masks is None:
            raise FabricError("no masks: predict with masks=True (needs a mask branch)")
        return self.masks.full(k).numpy()


class Model:
    """A loaded detector: a checkpoint (run as its folded inference copy) or an ONNX export.

    Use :func:`load`. ``class_names`` and ``meta`` (the checkpoint's metadata) are read at load
    time; the inference network is built once per ``masks`` setting.
    """

    def __init__(self, weights: Path, device: str = "auto") -> None:
        from fabricnms.engine.runtime import resolve_device

        self.weights = weights
        self.device = resolve_device(device)
        self._nets: dict[bool, nn.Module] = {}
        net, self.meta = self._load(masks=False, threads=0)
        self._nets[False] = net
        self.class_names: list[str] = list(self.meta["class_names"])

    def _load(self, masks: bool, threads: int) -> tuple[nn.Module, dict[str, Any]]:
        from fabricnms.engine.backend import inference_threads, load_inference_model

        return load_inference_model(self.weights, self.device, masks, inference_threads(threads))

    def network(self, masks: bool = False) -> nn.Module:
        """The inference network (``[B, 3, H, W]`` RGB [0, 1] -> ``DenseOutput``)."""
        if masks not in self._nets:
            self._nets[masks] = self._load(masks, threads=0)[0]
        return self._nets[masks]

    def predict(
        self,
        frames: Frame | Sequence[Frame],
        conf: float | None = None,
        nms: str = "dnms",
        max_det: int = 300,
        tile: int = 1024,
        overlap: float = 0.2,
        batch: int = 4,
        masks: bool = False,
        threads: int = 0,
        edge_band: int = EDGE_BAND,
    ) -> list[FrameResult]:
        """Detect defects in each frame (``predict``'s settings and defaults), in order.

        ``frames``: image paths and/or ``[H, W, 3]`` (or ``[H, W]`` grey) uint8 RGB arrays. A
        frame that cannot be read is a one-line :class:`FabricError`. ``conf`` ``None``: the
        checkpoint's operating point (per-class thresholds included), else 0.25, as in
        ``predict``. ``threads``: CPU inference threads (0: the cores the load average leaves
        idle). ``edge_band``: as ``predict --edge-band`` (detections past a found fabric edge or
        within this many px inside it are dropped; -1: edges are not looked for).
        """
        from fabricnms.engine.backend import inference_threads
        from fabricnms.engine.operating_point import resolve_operating_point
        from fabricnms.engine.shift import FeatureTap, stats_from_meta
        from fabricnms.engine.tiling import TileSettings, detect_frames
        from fabricnms.model.mask_infer import MaskSettings

        point = resolve_operating_point(conf, self.meta).point
        items = [frames] if isinstance(frames, (str, Path, np.ndarray)) else list(frames)
        settings = TileSettings(
            tile=tile,
            overlap=overlap,
            batch=batch,
            nms=nms,
            conf=point.floor(),
            max_det=max_det,
            masks=MaskSettings() if masks else None,
            edge_band=edge_band,
        )
        inference_threads(threads)
        sizes: list[tuple[int, int]] = []

        def images() -> Iterator[np.ndarray]:
            for image in _rgb_frames(items):
                sizes.append((int(image.shape[1]), int(image.shape[0])))
                yield image

        net = self.network(masks)
        fabric = stats_from_meta(self.meta)
        results = []
        with FeatureTap(net if fabric is not None else None) as tap:
            for i, det in enumerate(detect_frames(net, images(), settings, self.device)):
                shift = None
                if fabric is not None:
                    desc = tap.take_frame(*sizes[i], tile, overlap, det.cloth)
                    shift = fabric.frame_score(desc)
                det = point.select(det.to("cpu"), self.class_names)
                cloth = det.cloth.to_dict(edge_band) if det.cloth else None
                results.append(self._result(_source_name(items[i], i), sizes[i], det, shift, cloth))
        return results

    def _result(
        self,
        source: str,
        size: tuple[int, int],
        det: Any,
        shift: float | None,
        cloth: dict[str, Any] | None,
    ) -> FrameResult:
        ids = det.labels.numpy().astype(np.int64)
        return FrameResult(
            source=source,
            width=size[0],
            height=size[1],
            boxes=det.boxes.numpy().astype(np.float32),
            scores=det.scores.numpy().astype(np.float32),
            class_ids=ids,
            class_names=[self.class_names[i] for i in ids.tolist()],
            masks=det.masks,
            fabric_shift=shift,
            cloth=cloth,
        )

    def eval(self, data: str | Path, split: str = "val", **settings: Any) -> Any:
        """``fabricnms eval`` on ``data`` (a dataset.yaml): an
        :class:`~fabricnms.engine.eval_run.EvalRun` (``.summary`` is eval.json). ``settings``:
        any :class:`~fabricnms.config.EvalConfig` field, plus ``project`` and ``name``."""
        from fabricnms.config import EvalConfig, load_config
        from fabricnms.engine.eval_run import run_eval

        project = settings.pop("project", "runs")
        name = settings.pop("name", "eval")
        overrides = {"weights": str(self.weights), "data": str(data), "split": split}
        cfg = load_config(EvalConfig, None, {**overrides, **settings})
        return run_eval(cfg, project=project, name=name)

    def export(
        self,
        out: str | Path | None = None,
        fmt: str = "onnx",
        dynamic: bool = False,
        half: bool = False,
        tile: int = 1024,
    ) -> Any:
        """``fabricnms export``: an :class:`~fabricnms.engine.export.ExportResult`. ``out``
        defaults to the checkpoint's path with ``.onnx`` (``default.onnx`` in the current
        folder for the shipped model)."""
        from fabricnms.engine.checkpoint import DEFAULT_WEIGHTS
        from fabricnms.engine.export import export_model

        if out is None and self.weights.resolve() == DEFAULT_WEIGHTS.resolve():
            out = Path("default.onnx")
        return export_model(self.weights, out, fmt=fmt, dynamic=dynamic, half=half, tile=tile)


def load(weights: str | Path = "default", device: str = "auto") -> Model:
    """A :class:`Model` from ``"default"`` (the shipped model), a ``.pt`` checkpoint or an
    ``.onnx`` export (with its ``.json`` metadata beside it); one-line errors otherwise."""
    from fabricnms.engine.checkpoint import DEFAULT_WEIGHTS

    path = DEFAULT_WEIGHTS if str(weights) == "default" else Path(weights)
    return Model(path, device)


def _source_name(frame: Frame, index: int) -> str:
    return f"array[{index}]" if isinstance(frame, np.ndarray) else str(frame)


def _rgb_frames(frames: Iterable[Frame]) -> Iterator[np.ndarray]:
    """Each frame as ``[H, W, 3]`` uint8 RGB (paths decoded as ``predict`` decodes them)."""
    from fabricnms.data.frame_reader import FrameReadError, read_frame_rgb

    for i, frame in enumerate(frames):
        if not isinstance(frame, np.ndarray):
            try:
                yield read_frame_rgb(frame)
            except FrameReadError as exc:
                raise FabricError(str(exc)) from None
            continue
        if frame.dtype != np.uint8 or frame.ndim not in (2, 3):
            raise FabricError(
                f"array[{i}]: expected [H, W, 3] or [H, W] uint8, got {frame.dtype} "
                f"{tuple(frame.shape)}"
            )
        if frame.ndim == 2:
            frame = np.repeat(frame[:, :, None], 3, axis=2)
        if frame.shape[2] != 3:
            raise FabricError(f"array[{i}]: expected 3 channels (RGB), got {frame.shape[2]}")
        yield np.ascontiguousarray(frame)
