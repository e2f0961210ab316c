"""Weight-space average of checkpoints: the mean of every float tensor, checks, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers_engine import save_detector

from fabricnms.engine.average import average_checkpoints, main
from fabricnms.engine.checkpoint import load_checkpoint, load_detector
from fabricnms.errors import FabricError
from fabricnms.model.detector import Detector

NAMES = ["hole", "stain"]


def _tiny(path: Path, seed: int, names: list[str] = NAMES) -> Path:
    torch.manual_seed(seed)
    model = Detector(num_classes=len(names), width=4, neck_channels=16, embed_dim=8)
    return save_detector(path, model, names)


def test_average_is_the_mean_of_the_weights_and_loads(tmp_path: Path) -> None:
    a, b = _tiny(tmp_path / "a.pt", 0), _tiny(tmp_path / "b.pt", 1)
    assert main([str(a), str(b), str(tmp_path / "avg.pt")]) == 0
    avg = load_checkpoint(tmp_path / "avg.pt")
    sa, sb = load_checkpoint(a)["model_state"], load_checkpoint(b)["model_state"]
    floats = [k for k, v in sa.items() if v.is_floating_point()]
    assert floats and not torch.equal(sa[floats[0]], sb[floats[0]])
    for key in floats:
        assert torch.allclose(avg["model_state"][key], (sa[key] + sb[key]) / 2, atol=1e-7)
    assert avg["averaged_from"] == [str(a), str(b)] and "operating_point" not in avg
    model, meta = load_detector(tmp_path / "avg.pt")
    assert meta["class_names"] == NAMES and isinstance(model, Detector)


def test_a_checkpoint_without_ema_brings_its_model_weights_to_the_ema_average(
    tmp_path: Path,
) -> None:
    a, b = _tiny(tmp_path / "a.pt", 0), _tiny(tmp_path / "b.pt", 1)
    with_ema = load_checkpoint(a)
    ema = {k: v + 1 if v.is_floating_point() else v for k, v in with_ema["model_state"].items()}
    torch.save({**with_ema, "ema_state": ema}, a)
    avg = average_checkpoints([a, b])
    sb = load_checkpoint(b)["model_state"]
    key = next(k for k, v in sb.items() if v.is_floating_point())
    assert torch.allclose(avg["ema_state"][key], (ema[key] + sb[key]) / 2, atol=1e-6)
    assert torch.allclose(
        avg["model_state"][key], (with_ema["model_state"][key] + sb[key]) / 2, atol=1e-6
    )


def test_checkpoints_of_another_class_set_are_refused(tmp_path: Path, capsys) -> None:
    a = _tiny(tmp_path / "a.pt", 0)
    odd = _tiny(tmp_path / "odd.pt", 1, ["hole", "knot"])
    with pytest.raises(FabricError, match=r"odd\.pt: its class_names differs"):
        average_checkpoints([a, odd])
    with pytest.raises(FabricError, match="at least two"):
        average_checkpoints([a])
    assert main([str(a), str(tmp_path / "missing.pt"), str(tmp_path / "out.pt")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "missing.pt: checkpoint file not found" in err
    assert not (tmp_path / "out.pt").exists()
