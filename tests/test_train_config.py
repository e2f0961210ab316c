"""Settings: defaults < YAML file < overrides, one-line errors, dataset.yaml parsing."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from fabricnms.config import (
    EvalConfig,
    TrainConfig,
    config_to_yaml,
    load_config,
    model_width_kwargs,
)
from fabricnms.data.dataset_yaml import load_data_yaml
from fabricnms.errors import FabricError


def test_precedence_defaults_file_overrides(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("epochs: 5\nlr: 0.01\nema: false\nmodel: {embed_dim: 16}\n")
    cfg = load_config(TrainConfig, path, {"epochs": 7, "batch": None})
    assert (cfg.epochs, cfg.lr, cfg.ema, cfg.batch) == (7, 0.01, False, TrainConfig().batch)
    assert cfg.model_kwargs()["embed_dim"] == 16
    assert cfg.model_kwargs()["width"] == 16  # model_width "s"
    again = load_config(TrainConfig, None, yaml.safe_load(config_to_yaml(cfg)))
    assert again == cfg  # config.yaml round-trips


@pytest.mark.parametrize(
    ("updates", "message"),
    [
        ({"epoch": 3}, "unknown setting 'epoch'; did you mean 'epochs'?"),
        ({"lr": -1.0}, "--lr -1.0: out of range [0.0, 1.0]"),
        ({"nms": "fast"}, "--nms 'fast': expected one of dnms, greedy, soft, none"),
        ({"batch": 2.5}, "--batch: expected an integer"),
        ({"ema": "maybe"}, "--ema: expected true/false"),
        ({"model_width": "xl"}, "model_width 'xl' is not one of n, s, m, l"),
        ({"device": "tpu"}, "--device 'tpu': expected auto, cpu, cuda or cuda:N"),
        ({"val_tile": 10}, "--val-tile 10: out of range [64, 8192]"),
    ],
)
def test_bad_values_give_one_line_errors(updates: dict, message: str) -> None:
    with pytest.raises(FabricError) as err:
        load_config(TrainConfig, None, updates)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_bad_config_files(tmp_path: Path) -> None:
    with pytest.raises(FabricError, match="config file not found"):
        load_config(TrainConfig, tmp_path / "nope.yaml", {})
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(FabricError, match="expected a mapping"):
        load_config(TrainConfig, tmp_path / "list.yaml", {})
    (tmp_path / "bad.yaml").write_text("epochs: [1\n")
    with pytest.raises(FabricError, match="not valid YAML"):
        load_config(TrainConfig, tmp_path / "bad.yaml", {})
    (tmp_path / "typo.yaml").write_text("patiance: 3\n")
    with pytest.raises(FabricError, match=r"typo\.yaml: unknown key 'patiance'; did you mean"):
        load_config(TrainConfig, tmp_path / "typo.yaml", {})


def test_eval_config_choices() -> None:
    assert load_config(EvalConfig, None, {"split": "train"}).split == "train"
    with pytest.raises(FabricError, match="--split 'test': expected one of train, val"):
        load_config(EvalConfig, None, {"split": "test"})


def test_model_width_presets_and_integers() -> None:
    assert model_width_kwargs("n") == {"width": 8, "neck_channels": 32}
    assert model_width_kwargs("12") == {"width": 12, "neck_channels": 48}
    with pytest.raises(FabricError):
        model_width_kwargs("1000")


def _write_data_yaml(root: Path, **fields: object) -> Path:
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "annotations").mkdir(exist_ok=True)
    (root / "annotations" / "instances_train.json").write_text("{}")
    spec = {
        "path": str(root),
        "image_root": str(root / "images"),
        "train": "annotations/instances_train.json",
        "val": "annotations/instances_val.json",
        "nc": 2,
        "names": ["hole", "stain"],
        "scheme": 20,
    }
    spec.update(fields)
    path = root / "dataset.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_data_yaml_resolves_paths_and_reports_missing_files(tmp_path: Path) -> None:
    path = _write_data_yaml(tmp_path)
    spec = load_data_yaml(tmp_path)  # a folder means its dataset.yaml
    assert spec.names == ("hole", "stain") and spec.nc == 2
    assert spec.split_path("train") == tmp_path / "annotations" / "instances_train.json"
    with pytest.raises(FabricError, match=r"'val' annotation file .*instances_val\.json does not"):
        spec.split_path("val")
    _write_data_yaml(tmp_path, nc=3)
    with pytest.raises(FabricError, match="nc = 3 but 'names' lists 2 classes"):
        load_data_yaml(path)
    _write_data_yaml(tmp_path, image_root=str(tmp_path / "gone"))
    with pytest.raises(FabricError, match=r"image_root .*gone is not a directory"):
        load_data_yaml(path)
    with pytest.raises(FabricError, match=r"other/dataset\.yaml: dataset file not found"):
        load_data_yaml(tmp_path / "other" / "dataset.yaml")
