"""Fabric families: determinism, the Tianchi look kept byte for byte, grey cameras, the side
background never over a defect."""

from __future__ import annotations

import numpy as np
import pytest

from fabricnms.data.fabric_families import FAMILIES, look_rng, sample_look, side_pixels
from fabricnms.data.synth import ReleaseOptions, validate_options
from fabricnms.data.synth_frame import render_frame
from fabricnms.errors import FabricError

W, H = 256, 160


def _seeds() -> dict[str, int]:
    """The first frame seed of each family."""
    out: dict[str, int] = {}
    seed = 0
    while len(out) < len(FAMILIES):
        out.setdefault(sample_look(look_rng(seed)).family, seed)
        seed += 1
    return out


def test_every_family_is_drawn_and_frames_are_deterministic() -> None:
    seeds = _seeds()
    assert set(seeds) == set(FAMILIES)
    for family, seed in seeds.items():
        a, b = render_frame(seed, W, H), render_frame(seed, W, H)
        assert np.array_equal(a.image, b.image), family
        assert [d.box for d in a.defects] == [d.box for d in b.defects]


def test_tianchi_frames_are_the_original_look() -> None:
    seeds = _seeds()
    for family, seed in seeds.items():
        mixed = render_frame(seed, W, H)
        original = render_frame(seed, W, H, fabrics="tianchi")
        same = np.array_equal(mixed.image, original.image)
        assert same == (family == "tianchi"), family
        # the defects are planned from their own stream: same names either way, and the same
        # boxes unless a side strip narrowed the fabric
        assert [d.raw_name for d in mixed.defects] == [d.raw_name for d in original.defects]
        if sample_look(look_rng(seed)).side == 0:
            assert [d.box for d in mixed.defects] == [d.box for d in original.defects]


def test_grey_families_are_grey_and_denim_is_colour() -> None:
    seeds = _seeds()
    for family in ("greige", "line_scan", "factory_grey"):
        image = render_frame(seeds[family], W, H).image.astype(int)
        assert np.abs(image[..., 0] - image[..., 1]).max() <= 1, family
        assert np.abs(image[..., 2] - image[..., 1]).max() <= 1, family
    denim = render_frame(seeds["denim"], W, H).image.astype(float)
    assert denim[..., 2].mean() > denim[..., 0].mean() + 10  # indigo
    assert (denim[..., 2] - denim[..., 0]).std() > 5  # colour noise


def test_side_strip_lies_beside_the_fabric_and_its_defects() -> None:
    seed = next(
        s
        for s in range(500)
        if sample_look(look_rng(s)).family == "greige" and sample_look(look_rng(s)).side != 0
    )
    look = sample_look(look_rng(seed))
    pad = side_pixels(look, W, 64)
    frame = render_frame(seed, W, H, n_defects=2)
    clean = render_frame(seed, W, H, n_defects=0)
    assert frame.image.shape == (H, W, 3) and pad > 16
    outer = int(0.4 * pad)  # beyond the selvedge (at most half the strip)
    strip = slice(0, outer) if look.side < 0 else slice(W - outer, W)
    assert frame.image[:, strip].mean() < 40  # greige lies on a dark table
    for d in frame.defects:
        assert d.mask.shape == (H, W) and not d.mask[:, strip].any()
        x0, _, x1, _ = d.box
        assert (x0 >= pad) if look.side < 0 else (x1 <= W - pad)
    # the strip is the same with or without defects: only the defects' pixels differ
    diff = np.abs(frame.image.astype(int) - clean.image.astype(int)).max(-1)
    assert diff[:, strip].max() == 0


def test_unknown_fabrics_is_an_error() -> None:
    with pytest.raises(FabricError, match="unknown fabrics 'silk'"):
        validate_options(ReleaseOptions(n_images=1, fabrics="silk"))
    with pytest.raises(ValueError, match="fabrics must be one of"):
        sample_look(look_rng(0), "silk")
