"""Epoch sampler: the order of training windows is a pure function of ``(seed, epoch)``.

Each frame appears ``floor(r) + Bernoulli(frac(r))`` times per epoch for its repeat factor ``r``
(LVIS repeat-factor sampling; ``r = 1`` everywhere without class balancing). The list is
shuffled, padded to a multiple of the number of processes and sharded ``rank::world`` like
``DistributedSampler``. Keys are ``(frame_index, sample_seed)`` for
:class:`fabricnms.data.dataset.TrainWindows`.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


class EpochSampler:
    """Yields ``(frame_index, sample_seed)`` keys for this process's share of one epoch."""

    def __init__(
        self, repeat_factors: np.ndarray, seed: int, rank: int = 0, world_size: int = 1
    ) -> None:
        if len(repeat_factors) == 0:
            raise ValueError("no frames to sample from")
        self.repeat_factors = np.asarray(repeat_factors, dtype=np.float64)
        self.seed = int(seed)
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self._keys = self._epoch_keys()

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order to produce (0-based)."""
        self.epoch = int(epoch)
        self._keys = self._epoch_keys()

    def _epoch_keys(self) -> list[tuple[int, int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        whole = np.floor(self.repeat_factors)
        counts = whole + (rng.random(len(whole)) < self.repeat_factors - whole)
        indices = np.repeat(np.arange(len(counts)), counts.astype(np.int64))
        indices = indices[rng.permutation(len(indices))]
        seeds = rng.integers(0, 2**63 - 1, size=len(indices))
        pad = (-len(indices)) % self.world_size
        if pad:
            indices = np.concatenate([indices, indices[:pad]])
            seeds = np.concatenate([seeds, seeds[:pad]])
        shard = slice(self.rank, None, self.world_size)
        return [(int(i), int(s)) for i, s in zip(indices[shard], seeds[shard], strict=True)]

    def __len__(self) -> int:
        return len(self._keys)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter(self._keys)
