"""Fabric-shift score: how unlike the fabric a model was trained or adapted on a frame looks.

Each tile the detector sees is described by its neck features, pooled: the spatial mean and
standard deviation of every channel of every FPN level (``D = 2 * levels * channels``, e.g.
288 for model ``n``), taken by a forward hook on ``model.neck`` (:class:`FeatureTap`), so the
score costs no extra forward pass. The checkpoint key ``fabric_stats`` holds the mean
``[D]`` and the precision matrix ``[D, D]`` (inverse of the covariance shrunk towards its
diagonal mean, :data:`SHRINK`) of those descriptors over the tiles of the training fabric
(clean and defective), and ``limit``, calibrated on held-out frames of that fabric
(:meth:`FabricStats.with_limit`).

A frame's ``fabric_shift`` is the mean over its tiles of the Mahalanobis distance divided by
``sqrt(D)`` (about 1 on the training fabric), over the tiles that lie on the cloth where the
frame shows the fabric's edge (:mod:`fabricnms.data.cloth`). A run warns (:data:`SHIFT_WARNING`)
when the median frame is above ``limit``.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from fabricnms.data.cloth import ClothRegion

#: Checkpoint key of the fabric statistics.
STATS_KEY = "fabric_stats"
#: Covariance shrinkage towards ``mean(diag) * I`` (the descriptors outnumber few windows).
SHRINK = 0.1
#: The limit is this many times a high quantile (:data:`LIMIT_QUANTILE`, nearest rank) of the
#: held-out frame scores of the model's own fabric: the warning tests a run's *median* frame, so
#: one odd held-out frame should not set it (with 20 or fewer frames the quantile is the max).
LIMIT_MARGIN = 1.25
LIMIT_QUANTILE = 0.95
#: Least share of a tile on the cloth for its descriptor to count in a frame's score.
ON_CLOTH = 0.75
SHIFT_WARNING = (
    "these frames look unlike the fabric this model knows: adapt it with "
    "`fabricnms adapt CLEAN_FRAMES`"
)


def _neck(model: nn.Module) -> nn.Module | None:
    """``model.neck``, looking through wrappers that keep the detector as ``.model``."""
    while not hasattr(model, "neck") and isinstance(getattr(model, "model", None), nn.Module):
        model = model.model
    neck = getattr(model, "neck", None)
    return neck if isinstance(neck, nn.Module) else None


def pooled_descriptor(feats: dict[int, Tensor]) -> Tensor:
    """Neck output ``{stride: [B, C, h, w]}`` -> ``[B, D]`` channel means and stds, float32."""
    parts = []
    for stride in sorted(feats):
        f = feats[stride].float()
        parts += [f.mean(dim=(2, 3)), f.std(dim=(2, 3))]
    return torch.cat(parts, dim=1)


class FeatureTap:
    """Collects one pooled descriptor per tile the model sees, in forward order.

    Use as a context manager (or call :meth:`close`); :meth:`take_frame` pops the descriptors
    of the next frame's tiles. Nothing is collected for ``model`` ``None`` or without a ``neck``.
    """

    def __init__(self, model: nn.Module | None) -> None:
        self.rows: deque[Tensor] = deque()
        neck = None if model is None else _neck(model)
        self.handle = None if neck is None else neck.register_forward_hook(self._hook)

    def _hook(self, _module: nn.Module, _inputs: Any, output: Any) -> None:
        self.rows.extend(pooled_descriptor(output).detach().cpu().unbind(0))

    def take_frame(
        self, width: int, height: int, tile: int, overlap: float, cloth: ClothRegion | None = None
    ) -> Tensor:
        """``[n, D]`` descriptors of the next frame's tiles (as
        :func:`~fabricnms.engine.tiling.tile_windows` cuts a ``width x height`` frame); with
        the frame's ``cloth`` region, only of the tiles at least :data:`ON_CLOTH` on it (all
        of them when none is): the table beside the fabric is not the fabric."""
        from fabricnms.engine.tiling import tile_windows

        windows = tile_windows(width, height, tile, overlap)
        rows = [self.rows.popleft() for _ in range(min(len(windows), len(self.rows)))]
        if cloth is not None and cloth.edges:
            on = [i for i, w in enumerate(windows[: len(rows)]) if cloth.share(w) >= ON_CLOTH]
            rows = [rows[i] for i in on] or rows
        return torch.stack(rows) if rows else torch.zeros(0, 0)

    def close(self) -> None:
        """Remove the hook."""
        if self.handle is not None:
            self.handle.remove()
            self.handle = None

    def __enter__(self) -> FeatureTap:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class FabricStats:
    """Descriptor statistics of a fabric: ``mean [D]``, ``precision [D, D]``, ``limit`` (NaN
    until calibrated), the number of ``windows`` they came from and a ``source`` text."""

    mean: Tensor
    precision: Tensor
    limit: float
    windows: int
    source: str

    @staticmethod
    def fit(descriptors: Tensor, source: str) -> FabricStats:
        """Statistics of ``descriptors [N, D]`` (``N >= 2``)."""
        x = descriptors.double()
        mean = x.mean(0)
        cov = torch.cov(x.T).reshape(x.shape[1], x.shape[1])
        scale = float(cov.diagonal().mean().clamp_min(1e-12))
        shrunk = (1 - SHRINK) * cov + SHRINK * scale * torch.eye(x.shape[1], dtype=x.dtype)
        precision = torch.linalg.inv(shrunk)
        return FabricStats(mean.float(), precision.float(), math.nan, int(x.shape[0]), source)

    def distances(self, descriptors: Tensor) -> Tensor:
        """``[N]`` Mahalanobis distance / sqrt(D) of ``descriptors [N, D]``."""
        d = descriptors.float() - self.mean
        maha = ((d @ self.precision) * d).sum(1).clamp_min(0.0)
        return (maha / d.shape[1]).sqrt()

    def frame_score(self, descriptors: Tensor) -> float | None:
        """A frame's ``fabric_shift``: the mean distance of its tiles' ``descriptors [n, D]``."""
        if descriptors.numel() == 0 or descriptors.shape[1] != self.mean.shape[0]:
            return None
        return round(float(self.distances(descriptors).mean()), 4)

    def with_limit(self, held_out_scores: Sequence[float]) -> FabricStats:
        """Limit = :data:`LIMIT_MARGIN` x the :data:`LIMIT_QUANTILE` held-out frame score."""
        ranked = sorted(held_out_scores)
        rank = min(len(ranked), math.ceil(LIMIT_QUANTILE * len(ranked) - 1e-9))
        return FabricStats(
            self.mean,
            self.precision,
            round(LIMIT_MARGIN * ranked[rank - 1], 4),
            self.windows,
            self.source,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain tensors and values for the checkpoint."""
        return {
            "mean": self.mean.contiguous(),
            "precision": self.precision.contiguous(),
            "limit": self.limit,
            "windows": self.windows,
            "source": self.source,
            "descriptor": "neck mean+std per channel per level",
        }

    @staticmethod
    def from_dict(obj: dict[str, Any]) -> FabricStats:
        """Inverse of :meth:`to_dict`."""
        return FabricStats(
            obj["mean"].float(),
            obj["precision"].float(),
            float(obj["limit"]),
            int(obj["windows"]),
            str(obj["source"]),
        )


def stats_from_meta(meta: dict[str, Any]) -> FabricStats | None:
    """The checkpoint's calibrated fabric statistics, or ``None``."""
    obj = meta.get(STATS_KEY)
    if not isinstance(obj, dict):
        return None
    stats = FabricStats.from_dict(obj)
    return None if math.isnan(stats.limit) else stats


def shift_summary(scores: Sequence[float | None], stats: FabricStats) -> dict[str, Any]:
    """Run-level verdict on the frames' ``fabric_shift`` scores (``None`` = not scored)."""
    got = [s for s in scores if s is not None]
    median = statistics.median(got) if got else None
    warn = median is not None and median > stats.limit
    return {
        "median": None if median is None else round(median, 4),
        "max": round(max(got), 4) if got else None,
        "limit": stats.limit,
        "frames_above": sum(s > stats.limit for s in got),
        "frames_scored": len(got),
        "warning": SHIFT_WARNING if warn else None,
    }
