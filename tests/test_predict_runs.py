"""predict as a run a user can trust: one writer per output folder, a frame too large to decode
skipped like any bad frame (predict and visualize), each frame's own time in its line."""

from __future__ import annotations

import os
import struct
import subprocess
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from helpers_engine import boosted_checkpoint
from typer.testing import CliRunner

from fabricnms.cli import app
from fabricnms.data.classes import class_names
from fabricnms.data.frame_reader import FrameReadError, read_frame_rgb
from fabricnms.engine.predict import PredictConfig, run_predict
from fabricnms.engine.predict_stream import FrameEvent
from fabricnms.engine.run_lock import LOCK_NAME, RunLock
from fabricnms.errors import FabricError

runner = CliRunner()
NAMES = class_names(20)


def huge_png(path: Path, width: int = 40000, height: int = 40000) -> Path:
    """A few-byte PNG whose header declares ``width x height`` grey pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
    png += chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    path.write_bytes(png)
    return path


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("w")
    return boosted_checkpoint(root / "tiny.pt", NAMES, root)[0]


def frames(folder: Path, count: int, size: tuple[int, int] = (96, 64)) -> list[Path]:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(1, count + 1):
        out.append(folder / f"f{i}.png")
        cv2.imwrite(str(out[-1]), rng.integers(90, 160, (size[1], size[0], 3), dtype=np.uint8))
    return out


def test_huge_header_is_refused_before_decoding(tmp_path: Path) -> None:
    with pytest.raises(FrameReadError, match=r"huge\.png: image too large to decode"):
        read_frame_rgb(huge_png(tmp_path / "huge.png"))
    with pytest.raises(FrameReadError, match=r"header says 12000x12000; the limit is 134217728"):
        read_frame_rgb(huge_png(tmp_path / "big.png", 12000, 12000))


def test_predict_skips_a_huge_frame_and_goes_on(tmp_path: Path, weights: Path) -> None:
    frames(tmp_path / "roll", 2)
    huge_png(tmp_path / "roll" / "f1b.png")  # between f1 and f2
    out = tmp_path / "out"
    r = runner.invoke(
        app, ["predict", str(tmp_path / "roll"), "--weights", str(weights), "-o", str(out)]
    )
    assert r.exit_code == 0, r.output
    assert "Traceback" not in r.output
    assert "f1b.png: image too large to decode" in r.stderr
    assert "3/3 " in r.stderr  # the frame after it was processed


def test_visualize_skips_a_huge_frame(tmp_path: Path) -> None:
    frames(tmp_path / "src", 1)
    huge_png(tmp_path / "src" / "big.png")
    r = runner.invoke(app, ["visualize", str(tmp_path / "src"), "-o", str(tmp_path / "vis")])
    assert r.exit_code == 0, r.output
    assert "1 drawn" in r.stderr and "1 unreadable" in r.stderr
    assert not (tmp_path / "vis" / "big.jpg").exists()


def test_truncated_jpeg_is_refused_by_visualize_too(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    _, data = cv2.imencode(".jpg", np.full((64, 64, 3), 120, np.uint8))
    (src / "cut.jpg").write_bytes(data.tobytes()[: len(data) // 2])
    r = runner.invoke(app, ["visualize", str(src), "-o", str(tmp_path / "vis")])
    assert r.exit_code == 1 and "no frame could be drawn" in r.stderr
    assert not (tmp_path / "vis" / "cut.jpg").exists()


def test_second_run_on_a_locked_folder_is_refused(tmp_path: Path, weights: Path) -> None:
    frames(tmp_path / "roll", 1)
    out = tmp_path / "out"
    with RunLock(out):  # another run holds the folder
        r = runner.invoke(
            app, ["predict", str(tmp_path / "roll"), "--weights", str(weights), "-o", str(out)]
        )
        assert r.exit_code == 1
        assert r.stderr.strip() == (
            f"error: {out}: in use by another fabricnms run (process {os.getpid()}); wait for "
            "it to finish or use another output folder"
        )
        assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]  # nothing written
        resumed = runner.invoke(
            app,
            [
                "predict",
                str(tmp_path / "roll"),
                "--weights",
                str(weights),
                "-o",
                str(out),
                "--resume",
            ],
        )
        assert resumed.exit_code == 1 and "in use by another fabricnms run" in resumed.stderr
    r = runner.invoke(
        app, ["predict", str(tmp_path / "roll"), "--weights", str(weights), "-o", str(out)]
    )
    assert r.exit_code == 0, r.output
    assert not (out / LOCK_NAME).exists()  # released


def test_lock_of_a_killed_run_is_taken_over(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    folder.mkdir()
    dead = subprocess.Popen(["true"])
    dead.wait()
    (folder / LOCK_NAME).write_text(f"{dead.pid}\n")  # what a kill -9 leaves behind
    with RunLock(folder):
        assert (folder / LOCK_NAME).read_text().strip() == str(os.getpid())


@pytest.mark.parametrize("kind", ["file", "proc"])
def test_out_that_cannot_be_a_folder_is_one_line(tmp_path: Path, weights: Path, kind: str) -> None:
    frames(tmp_path / "roll", 1)
    if kind == "file":
        (tmp_path / "plain").write_text("x")
        out = tmp_path / "plain" / "sub"
    else:
        out = Path("/proc/fabricnms_x")
    r = runner.invoke(
        app, ["predict", str(tmp_path / "roll"), "--weights", str(weights), "-o", str(out)]
    )
    assert r.exit_code == 1 and r.stderr.count("\n") == 1, r.output
    assert r.stderr.startswith(f"error: --out {out}: cannot create the folder")


class _SlowPerWindow(torch.nn.Module):
    """A detector whose forward pass takes 20 ms per window of the batch."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> object:
        time.sleep(0.02 * images.shape[0])
        return self.model(images)


def test_frame_ms_is_the_frames_own_time(tmp_path: Path, weights: Path) -> None:
    from fabricnms.engine.checkpoint import load_detector

    model, _ = load_detector(weights)
    # one window per frame, 4 windows per batch: one pass serves 4 frames
    paths = frames(tmp_path / "roll", 8)
    events: list[FrameEvent] = []
    cfg = PredictConfig(sources=[str(p) for p in paths], tile=128, batch=4, overlays=False)
    run_predict(
        cfg,
        out=tmp_path / "out",
        on_frame=events.append,
        model=_SlowPerWindow(model),
        class_names=NAMES,
    )
    assert len(events) == 8
    # each frame's share of its pass is 20 ms; the time since the previous line is ~0 for
    # three frames of every four
    assert min(e.ms for e in events) >= 18.0, [round(e.ms, 1) for e in events]


def test_run_lock_outside_out_dir_raises_fabric_error(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    with pytest.raises(FabricError, match="exists and is not a folder"):
        RunLock(tmp_path / "f")
