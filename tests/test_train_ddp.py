"""Two CPU processes under torchrun (gloo DDP): rank 0 alone writes; the run completes."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from helpers_engine import make_dataset

from fabricnms.engine.checkpoint import load_checkpoint


def test_torchrun_two_cpu_processes(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "data", n_train=5, n_val=1, width=96, height=80)
    cmd = [
        *(sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"),
        *("-m", "fabricnms", "train", "--data", str(data), "--epochs", "2", "--batch", "2"),
        *("--tile", "64", "--workers", "0", "--model-width", "4", "--device", "cpu"),
        *("--project", str(tmp_path / "runs"), "--json"),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # torchrun and both ranks
        stdout, stderr = proc.communicate()
    assert proc.returncode == 0, stderr[-8000:]
    runs = sorted(p.name for p in (tmp_path / "runs" / "train").iterdir())
    assert runs == ["train"]  # one run directory: only rank 0 creates and writes
    summary = json.loads(stdout.strip())  # exactly one JSON document on stdout
    assert summary["epochs"] == 2
    run = tmp_path / "runs" / "train" / "train"
    with open(run / "metrics.csv", newline="") as fh:
        assert [r["epoch"] for r in csv.DictReader(fh)] == ["1", "2"]
    # 5 frames padded to 6 windows, sharded 3 + 3 -> 2 steps per process per epoch
    assert "6 windows/epoch, 2 steps/epoch" in " ".join(stderr.split())
    ckpt = load_checkpoint(run / "weights" / "last.pt")
    assert ckpt["global_step"] == 4 and ckpt["epoch"] == 2
