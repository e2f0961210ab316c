"""Bad inputs thrown at every command: each gets one line naming the file or option, the right
exit code (2 for a bad option value, 1 for a bad file), no traceback, and leaves no output.

Every case runs in-process (CliRunner) on tiny files built once per module; the runs folder
of each case is checked to be absent or empty afterwards.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml
from helpers_engine import boosted_checkpoint, make_dataset
from test_predict_runs import huge_png
from typer.testing import CliRunner

from fabricnms.cli import app
from fabricnms.data.classes import class_names
from fabricnms.engine.checkpoint import make_checkpoint, save_checkpoint
from fabricnms.model.detector import Detector

runner = CliRunner()
NAMES = class_names(20)


def _jpeg_bytes() -> bytes:
    ok, data = cv2.imencode(".jpg", np.full((48, 64, 3), 120, np.uint8))
    assert ok
    return data.tobytes()


def _checkpoint(path: Path, names: list[str]) -> Path:
    model = Detector(num_classes=20, width=4, neck_channels=16, embed_dim=8)
    save_checkpoint(
        path,
        make_checkpoint(
            model_state=model.state_dict(), detector_config=model.config, class_names=names
        ),
    )
    return path


@pytest.fixture(scope="module")
def w(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Paths of good and bad inputs, by name (used as ``{name}`` in the case arguments)."""
    root = tmp_path_factory.mktemp("bad")
    p: dict[str, Path] = {"root": root}
    p["frames"] = root / "frames"
    p["frames"].mkdir()
    rng = np.random.default_rng(0)
    for i in (1, 2):
        cv2.imwrite(str(p["frames"] / f"f{i}.png"), rng.integers(90, 160, (64, 96, 3), np.uint8))
    p["good_frame"] = p["frames"] / "f1.png"
    bad = root / "bad_frames"
    bad.mkdir()
    (bad / "garbage.png").write_bytes(b"not an image")
    (bad / "empty.png").write_bytes(b"")
    (bad / "cut.jpg").write_bytes(_jpeg_bytes()[:200])
    huge_png(bad / "huge.png")
    p["bad_frames"] = bad
    p["empty_dir"] = root / "empty_dir"
    p["empty_dir"].mkdir()
    p["text"] = root / "notes.md"
    p["text"].write_text("hello")
    p["plain"] = root / "plain_file"
    p["plain"].write_text("x")
    p["badlist"] = root / "list.txt"
    p["badlist"].write_text("frames/f1.png\nreadme.doc\n")
    # checkpoints
    p["good_pt"] = boosted_checkpoint(root / "good.pt", NAMES, root)[0]
    p["junk_pt"] = root / "junk.pt"
    p["junk_pt"].write_bytes(b"\x00garbage" * 10)
    p["text_pt"] = root / "text.pt"
    p["text_pt"].write_text("junk\n")  # parses as pickle opcodes: a KeyError inside torch.load
    p["pickled_pt"] = root / "pickled.pt"
    torch.save({"x": torch.nn.Linear(2, 2)}, p["pickled_pt"])
    p["plain_pt"] = root / "plain.pt"
    torch.save({"weights": torch.zeros(2)}, p["plain_pt"])
    p["names5_pt"] = _checkpoint(root / "names5.pt", NAMES[:5])
    p["names22_pt"] = _checkpoint(root / "names22.pt", [*NAMES, "x1", "x2"])
    p["dup_pt"] = _checkpoint(root / "dup.pt", [NAMES[0]] * 20)
    p["pickle_raw"] = root / "raw.pt"
    p["pickle_raw"].write_bytes(pickle.dumps({"a": 1}))
    # datasets
    p["data"] = make_dataset(root / "data", n_train=2, n_val=1, width=96, height=80)
    spec = yaml.safe_load(p["data"].read_text())
    for name, change in {
        "no_names": {"names": None},
        "nc_wrong": {"nc": 7},
        "root_missing": {"image_root": str(root / "nowhere")},
        "split_missing": {"train": "annotations/none.json"},
    }.items():
        bad_spec = {k: v for k, v in {**spec, **change}.items() if v is not None}
        p[name] = root / f"{name}.yaml"
        p[name].write_text(yaml.safe_dump(bad_spec))
    p["not_yaml"] = root / "broken.yaml"
    p["not_yaml"].write_text("names: [a, b\n")
    p["list_yaml"] = root / "list.yaml"
    p["list_yaml"].write_text("- 1\n- 2\n")
    p["cfg_typo"] = root / "typo.yaml"
    p["cfg_typo"].write_text("epochz: 3\n")
    cut_data = make_dataset(root / "cutdata", n_train=2, n_val=1, width=96, height=80)
    (root / "cutdata" / "images" / "train_000.png").write_bytes(_jpeg_bytes()[:300])  # truncated
    p["cut_data"] = cut_data
    # label files
    p["bad_json"] = root / "bad.json"
    p["bad_json"].write_text("{not json")
    p["wrong_json"] = root / "wrong.json"
    p["wrong_json"].write_text(json.dumps({"a": 1}))
    p["scalar_json"] = root / "scalar.json"
    p["scalar_json"].write_text("3")
    p["preds"] = root / "preds.json"
    p["preds"].write_text(
        json.dumps([{"name": "f1.png", "category": 1, "bbox": [1, 1, 5, 5], "score": 0.9}])
    )
    p["gt"] = root / "gt.json"
    p["gt"].write_text(
        json.dumps([{"name": "f1.png", "defect_name": "破洞", "bbox": [1, 1, 5, 5]}])
    )
    # Tianchi releases for convert
    rel = root / "release"
    (rel / "Annotations").mkdir(parents=True)
    (rel / "defect_Images").mkdir()
    (rel / "defect_Images" / "a.jpg").write_bytes(_jpeg_bytes())
    (rel / "Annotations" / "anno_train.json").write_text("[{oops")
    p["rel_badjson"] = rel
    rel2 = root / "release2"
    (rel2 / "Annotations").mkdir(parents=True)
    (rel2 / "Annotations" / "anno_train.json").write_text(json.dumps([{"name": "a.jpg"}]))
    p["rel_keys"] = rel2
    rel3 = root / "release3"
    (rel3 / "Annotations").mkdir(parents=True)
    (rel3 / "defect_Images").mkdir()
    (rel3 / "defect_Images" / "a.jpg").write_bytes(_jpeg_bytes()[:300])
    (rel3 / "Annotations" / "anno_train.json").write_text(
        json.dumps([{"name": "a.jpg", "defect_name": "破洞", "bbox": [1, 1, 9, 9]}])
    )
    p["rel_cut"] = rel3
    return {k: str(v) for k, v in p.items()}


# (id, args, exit code, text the error line must contain); {name} is a path of ``w``.
CASES: list[tuple[str, list[str], int, str]] = [
    # synth
    (
        "synth-huge-size",
        ["synth", "{out}", "--images", "1", "--size", "100000x100000"],
        2,
        "--size",
    ),
    ("synth-size-text", ["synth", "{out}", "--size", "big"], 2, "--size"),
    ("synth-size-small", ["synth", "{out}", "--images", "1", "--size", "8x8"], 1, "too small"),
    ("synth-zero-images", ["synth", "{out}", "--images", "0"], 2, "--images"),
    ("synth-out-is-file", ["synth", "{plain}", "--images", "1"], 1, "plain_file"),
    ("synth-normal-fraction", ["synth", "{out}", "--normal-fraction", "2"], 2, "--normal-fraction"),
    ("synth-bad-classes", ["synth", "{out}", "--images", "1", "--classes", "nope"], 1, "nope"),
    ("synth-bad-layout", ["synth", "{out}", "--layout", "spiral"], 2, "--layout"),
    # convert
    ("convert-missing-src", ["convert", "{root}/nothing", "{out}"], 1, "nothing"),
    ("convert-no-labels", ["convert", "{empty_dir}", "{out}"], 1, "empty_dir"),
    ("convert-bad-json", ["convert", "{rel_badjson}", "{out}"], 1, "anno_train.json"),
    ("convert-missing-keys", ["convert", "{rel_keys}", "{out}"], 1, "anno_train.json"),
    (
        "convert-val-fraction",
        ["convert", "{rel_keys}", "{out}", "--val-fraction", "1.5"],
        2,
        "--val-fraction",
    ),
    ("convert-classes", ["convert", "{rel_keys}", "{out}", "--classes", "7"], 2, "--classes"),
    (
        "convert-cut-jpeg-strict",
        ["convert", "{rel_cut}", "{out}", "--strict"],
        1,
        "a.jpg: truncated JPEG",
    ),
    (
        "convert-cut-jpeg-decode",
        ["convert", "{rel_cut}", "{out}", "--check", "--decode", "--strict"],
        1,
        "a.jpg",
    ),
    # train
    ("train-set-lr-abc", ["train", "--data", "{data}", "--set", "lr=abc"], 2, "--set lr"),
    ("train-set-unknown", ["train", "--data", "{data}", "--set", "lrr=1"], 2, "did you mean 'lr'"),
    ("train-set-no-equals", ["train", "--data", "{data}", "--set", "epochs"], 2, "--set 'epochs'"),
    ("train-set-bad-yaml", ["train", "--data", "{data}", "--set", "model={{a"], 2, "--set"),
    ("train-nms", ["train", "--data", "{data}", "--nms", "bogus"], 2, "--nms 'bogus'"),
    ("train-device", ["train", "--data", "{data}", "--device", "tpu"], 2, "--device 'tpu'"),
    ("train-epochs-zero", ["train", "--data", "{data}", "--epochs", "0"], 2, "--epochs 0"),
    ("train-width", ["train", "--data", "{data}", "--model-width", "xl"], 2, "--model-width"),
    (
        "train-resume-weights",
        ["train", "--resume", "latest", "--weights", "{good_pt}"],
        2,
        "--resume",
    ),
    ("train-no-data", ["train", "--project", "{out}"], 1, "--data"),
    (
        "train-data-missing",
        ["train", "--data", "{root}/none.yaml", "--project", "{out}"],
        1,
        "none.yaml",
    ),
    (
        "train-data-not-yaml",
        ["train", "--data", "{not_yaml}", "--project", "{out}"],
        1,
        "broken.yaml",
    ),
    ("train-data-list", ["train", "--data", "{list_yaml}", "--project", "{out}"], 1, "list.yaml"),
    (
        "train-data-no-names",
        ["train", "--data", "{no_names}", "--project", "{out}"],
        1,
        "no_names.yaml",
    ),
    ("train-data-nc", ["train", "--data", "{nc_wrong}", "--project", "{out}"], 1, "nc_wrong.yaml"),
    (
        "train-data-root",
        ["train", "--data", "{root_missing}", "--project", "{out}"],
        1,
        "root_missing.yaml",
    ),
    (
        "train-data-split",
        ["train", "--data", "{split_missing}", "--project", "{out}"],
        1,
        "split_missing.yaml",
    ),
    (
        "train-config-missing",
        ["train", "--data", "{data}", "--config", "{root}/c.yaml"],
        1,
        "c.yaml",
    ),
    ("train-config-typo", ["train", "--data", "{data}", "--config", "{cfg_typo}"], 1, "typo.yaml"),
    (
        "train-resume-missing",
        ["train", "--resume", "{root}/norun", "--project", "{out}"],
        1,
        "norun",
    ),
    (
        "train-resume-latest-none",
        ["train", "--resume", "latest", "--project", "{out}"],
        1,
        "--resume latest",
    ),
    (
        "train-weights-junk",
        [
            "train",
            "--data",
            "{data}",
            "--weights",
            "{junk_pt}",
            "--project",
            "{out}",
            "--workers",
            "0",
        ],
        1,
        "junk.pt",
    ),
    (
        "train-weights-names5",
        [
            "train",
            "--data",
            "{data}",
            "--weights",
            "{names5_pt}",
            "--project",
            "{out}",
            "--workers",
            "0",
        ],
        1,
        "names5.pt",
    ),
    (
        "train-cut-frame",
        ["train", "--data", "{cut_data}", "--project", "{out}"],
        1,
        "train_000.png",
    ),
    # eval
    (
        "eval-weights-missing",
        ["eval", "--weights", "{root}/gone.pt", "--data", "{data}", "--project", "{out}"],
        1,
        "gone.pt",
    ),
    (
        "eval-weights-junk",
        ["eval", "--weights", "{junk_pt}", "--data", "{data}", "--project", "{out}"],
        1,
        "junk.pt",
    ),
    (
        "eval-weights-pickled",
        ["eval", "--weights", "{pickled_pt}", "--data", "{data}", "--project", "{out}"],
        1,
        "pickled.pt",
    ),
    (
        "eval-names22",
        ["eval", "--weights", "{names22_pt}", "--data", "{data}", "--project", "{out}"],
        1,
        "names22.pt",
    ),
    (
        "eval-split",
        ["eval", "--weights", "{good_pt}", "--data", "{data}", "--split", "test"],
        2,
        "--split 'test'",
    ),
    (
        "eval-nms",
        ["eval", "--weights", "{good_pt}", "--data", "{data}", "--nms", "fast"],
        2,
        "--nms 'fast'",
    ),
    (
        "eval-tile",
        ["eval", "--weights", "{good_pt}", "--data", "{data}", "--tile", "8"],
        2,
        "--tile 8",
    ),
    (
        "eval-data-bad",
        ["eval", "--weights", "{good_pt}", "--data", "{not_yaml}", "--project", "{out}"],
        1,
        "broken.yaml",
    ),
    # predict
    ("predict-missing-source", ["predict", "{root}/nothing.png", "-o", "{out}"], 1, "nothing.png"),
    ("predict-empty-folder", ["predict", "{empty_dir}", "-o", "{out}"], 1, "empty_dir"),
    ("predict-not-an-image", ["predict", "{text}", "-o", "{out}"], 1, "notes.md"),
    ("predict-list-line", ["predict", "{badlist}", "-o", "{out}"], 1, "readme.doc"),
    (
        "predict-shard-text",
        ["predict", "{frames}", "--shard", "abc", "-o", "{out}"],
        2,
        "--shard 'abc'",
    ),
    (
        "predict-shard-range",
        ["predict", "{frames}", "--shard", "4/4", "-o", "{out}"],
        2,
        "--shard '4/4'",
    ),
    ("predict-nms", ["predict", "{frames}", "--nms", "bogus", "-o", "{out}"], 2, "--nms 'bogus'"),
    ("predict-format", ["predict", "{frames}", "--format", "xml", "-o", "{out}"], 2, "--format"),
    ("predict-conf", ["predict", "{frames}", "--conf", "2", "-o", "{out}"], 2, "--conf"),
    ("predict-tile", ["predict", "{frames}", "--tile", "10", "-o", "{out}"], 2, "--tile"),
    (
        "predict-device",
        ["predict", "{frames}", "--device", "tpu", "-o", "{out}"],
        2,
        "--device 'tpu'",
    ),
    (
        "predict-device-cuda9",
        ["predict", "{frames}", "--device", "cuda:9", "--weights", "{good_pt}", "-o", "{out}"],
        1,
        "--device cuda:9",
    ),
    ("predict-resume-no-out", ["predict", "{frames}", "--resume"], 2, "--resume"),
    (
        "predict-weights-missing",
        ["predict", "{frames}", "--weights", "{root}/gone.pt", "-o", "{out}"],
        1,
        "gone.pt",
    ),
    (
        "predict-weights-junk",
        ["predict", "{frames}", "--weights", "{junk_pt}", "-o", "{out}"],
        1,
        "junk.pt",
    ),
    (
        "predict-weights-pickled",
        ["predict", "{frames}", "--weights", "{pickled_pt}", "-o", "{out}"],
        1,
        "pickled.pt: not a fabricnms checkpoint: it holds pickled Python objects",
    ),
    (
        "predict-weights-raw-pickle",
        ["predict", "{frames}", "--weights", "{pickle_raw}", "-o", "{out}"],
        1,
        "raw.pt",
    ),
    (
        "predict-weights-plain",
        ["predict", "{frames}", "--weights", "{plain_pt}", "-o", "{out}"],
        1,
        "plain.pt",
    ),
    (
        "predict-names5",
        ["predict", "{frames}", "--weights", "{names5_pt}", "-o", "{out}"],
        1,
        "names5.pt: checkpoint names 5 classes but its detector head has 20",
    ),
    (
        "predict-names22",
        ["predict", "{frames}", "--weights", "{names22_pt}", "-o", "{out}"],
        1,
        "names22.pt",
    ),
    (
        "predict-dup-names",
        ["predict", "{frames}", "--weights", "{dup_pt}", "-o", "{out}"],
        1,
        "dup.pt",
    ),
    (
        "predict-out-under-file",
        ["predict", "{frames}", "--weights", "{good_pt}", "-o", "{plain}/sub"],
        1,
        "plain_file/sub",
    ),
    (
        "predict-out-proc",
        ["predict", "{frames}", "--weights", "{good_pt}", "-o", "/proc/fabricnms_x"],
        1,
        "/proc/fabricnms_x",
    ),
    ("predict-grading", ["predict", "{frames}", "--grading", "7", "-o", "{out}"], 2, "--grading"),
    (
        "predict-px-per-mm",
        ["predict", "{frames}", "--px-per-mm", "0", "-o", "{out}"],
        2,
        "--px-per-mm",
    ),
    # visualize
    ("visualize-missing", ["visualize", "{root}/nothing", "-o", "{out}"], 1, "nothing"),
    (
        "visualize-bad-json",
        ["visualize", "{frames}", "-a", "{bad_json}", "-o", "{out}"],
        1,
        "bad.json",
    ),
    (
        "visualize-wrong-json",
        ["visualize", "{frames}", "-a", "{wrong_json}", "-o", "{out}"],
        1,
        "wrong.json",
    ),
    (
        "visualize-scalar-json",
        ["visualize", "{frames}", "-p", "{scalar_json}", "-o", "{out}"],
        1,
        "scalar.json",
    ),
    (
        "visualize-preds-as-gt",
        ["visualize", "{frames}", "-a", "{preds}", "-o", "{out}"],
        1,
        "preds.json",
    ),
    ("visualize-gt-as-preds", ["visualize", "{frames}", "-p", "{gt}", "-o", "{out}"], 1, "gt.json"),
    (
        "visualize-compare-alone",
        ["visualize", "{frames}", "--mode", "compare", "-o", "{out}"],
        1,
        "--mode compare",
    ),
    ("visualize-mode", ["visualize", "{frames}", "--mode", "mosaic", "-o", "{out}"], 2, "--mode"),
    (
        "visualize-only-bad",
        ["visualize", "{bad_frames}", "-o", "{out}"],
        1,
        "no frame could be drawn",
    ),
    (
        "visualize-annotations-missing",
        ["visualize", "{frames}", "-a", "{root}/no.json", "-o", "{out}"],
        1,
        "no.json",
    ),
    # info
    ("info-size-huge", ["info", "--size", "100000"], 2, "--size '100000'"),
    ("info-size-odd", ["info", "--size", "100"], 2, "--size '100'"),
    ("info-size-text", ["info", "--size", "big"], 2, "--size 'big'"),
    ("info-strides", ["info", "--strides", "3"], 2, "--strides"),
    ("info-weights-text", ["info", "--weights", "{text_pt}"], 1, "text.pt: not a fabricnms"),
    ("info-weights-missing", ["info", "--weights", "{root}/none.pt"], 1, "none.pt: checkpoint"),
    ("info-width", ["info", "--model-width", "xl"], 1, "xl"),
]


def _fill(arg: str, w: dict[str, str]) -> str:
    return arg.format(**w)


#: Added to train cases (unless given): should a bad input slip through, the run stays tiny.
_TINY_TRAIN = {"--epochs": "1", "--workers": "0", "--tile": "64", "--model-width": "4"}


def _command(args: list[str], w: dict[str, str]) -> list[str]:
    out = [_fill(a, w) for a in args]
    if out[0] == "train":
        for flag, value in _TINY_TRAIN.items():
            if flag not in out:
                out += [flag, value]
    return out


@pytest.mark.parametrize(
    ("args", "code", "text"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_input(
    w: dict[str, str], tmp_path: Path, args: list[str], code: int, text: str
) -> None:
    w = {**w, "out": str(tmp_path / "out")}  # must never be created
    result = runner.invoke(app, _command(args, w))
    out = result.output
    assert "Traceback" not in out, out
    assert result.exception is None or isinstance(result.exception, SystemExit), out
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    assert result.exit_code == code, result.stderr
    assert _fill(text, w) in errors[0], errors[0]
    leftover = Path(w["out"])
    assert not leftover.exists() or not any(leftover.iterdir()), sorted(leftover.rglob("*"))


def test_the_sweep_is_wide() -> None:
    commands = {args[0] for _, args, _, _ in CASES}
    assert commands == {"synth", "convert", "train", "eval", "predict", "visualize", "info"}
    assert len(CASES) >= 60
