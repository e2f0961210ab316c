"""How far the synthetic frames are from real ones: a domain classifier on texture statistics.

Run::

    python benchmarks/realism.py ../shared/real/*/ [--synth DIR | --synth-frames 60 \\
        --synth-seed 0 --synth-arg=--difficulty=normal ...] [--window 256] [--per-frame 8] \
        [--tsv ../shared/reference/tianchi_round1_boxes.tsv]

With ``--tsv`` it first prints the per-category box geometry, real vs synthetic, with pass /
fail against the issue's bounds (:func:`geometry_table`, ``benchmarks/synth_geometry.py``).

Real windows are cut from the frames of every ``REAL`` folder (the frames ``predict`` would
find there; real frames are never committed), synthetic windows from the frames of a
``fabricnms synth`` release (``--synth DIR``; without it one is made in a temporary folder with
``python -m fabricnms synth TMP --images N --seed S`` plus the ``--synth-arg`` options). Each
frame gives up to ``--per-frame`` windows of ``--window`` pixels at seeded random positions,
at the frame's own scale (as the detector sees it); the same number of frames of each side is
used, so chance is 0.5.

Every window becomes a vector of texture statistics (:func:`texture_features`: grey-level
moments, gradient statistics, FFT band and orientation energies, colour-channel noise
correlation and chroma, local contrast, row / column profiles, fine-noise level), and an
L2-regularised logistic regression (:func:`fit_logistic`, Newton steps, standardised features)
tells real from synthetic. Accuracy is cross-validated over ``--folds`` folds grouped by source
frame: the windows of one frame are never in both the training and the test part. 0.5 means
the two are indistinguishable by these statistics (the issue's goal is <= 0.75); the table also
lists, per real set, the share of its windows taken for real, and the features that separate
most (largest standardised coefficients of a fit on all windows).
"""

from __future__ import annotations

import argparse
import itertools
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from fabricnms.data.frame_reader import FrameReadError, read_frame_rgb
from fabricnms.engine.sources import discover_frames

#: Radial frequency band edges, cycles per pixel (0.707 = the spectrum's corner).
BANDS = (0.0, 1 / 64, 1 / 32, 1 / 16, 1 / 8, 1 / 4, 0.3536, 0.7072)


@dataclass
class Windows:
    """Feature rows ``x [N, F]``, their source frame index ``group [N]`` and set name ``source``."""

    x: np.ndarray
    group: np.ndarray
    source: list[str]


def feature_names() -> list[str]:
    """Names of the :func:`texture_features` columns, in order."""
    bands = [f"fft band {BANDS[i]:.3f}-{BANDS[i + 1]:.3f}" for i in range(len(BANDS) - 1)]
    return [
        "grey mean",
        "grey std",
        "grey skew",
        "grey kurtosis",
        "p1-p99 range / std",
        "mean |dx| / std",
        "mean |dy| / std",
        "log |dx| / |dy|",
        "gradient kurtosis",
        *bands,
        "fft horizontal share",
        "fft vertical share",
        "fft diagonal share",
        "fft peak / mean (log)",
        "chroma R-G std / std",
        "chroma B-G std / std",
        "noise corr R,G",
        "noise corr B,G",
        "local std mean / std",
        "block mean std / std",
        "local std cv",
        "column profile std / std",
        "row profile std / std",
        "fine noise / std",
    ]


def texture_features(window: np.ndarray) -> np.ndarray:
    """Texture statistics ``[F]`` float64 of one ``[S, S, 3]`` uint8 RGB window (S >= 32)."""
    rgb = window.astype(np.float64)
    g = rgb.mean(2)
    mu, sd = g.mean(), g.std() + 1e-6
    z = (g - mu) / sd
    p1, p99 = np.percentile(g, (1, 99))
    dx, dy = np.abs(np.diff(g, axis=1)), np.abs(np.diff(g, axis=0))
    mag = np.hypot(dx[:-1, :], dy[:, :-1])
    mz = (mag - mag.mean()) / (mag.std() + 1e-6)
    feats = [
        mu,
        sd,
        float((z**3).mean()),
        float(np.log1p((z**4).mean())),
        (p99 - p1) / sd,
        dx.mean() / sd,
        dy.mean() / sd,
        float(np.log((dx.mean() + 1e-6) / (dy.mean() + 1e-6))),
        float(np.log1p((mz**4).mean())),
    ]
    feats += _spectrum_features(g - mu)
    hp = rgb - cv2.GaussianBlur(rgb, (0, 0), 1.5)
    r, gg, b = (hp[:, :, c].ravel() for c in range(3))
    feats += [
        float((rgb[:, :, 0] - rgb[:, :, 1]).std() / sd),
        float((rgb[:, :, 2] - rgb[:, :, 1]).std() / sd),
        _corr(r, gg),
        _corr(b, gg),
    ]
    s = g.shape[0] // 16 * 16
    blocks = g[:s, :s].reshape(s // 16, 16, s // 16, 16)
    local = blocks.std(axis=(1, 3))
    feats += [
        float(local.mean() / sd),
        float(blocks.mean(axis=(1, 3)).std() / sd),
        float(local.std() / (local.mean() + 1e-6)),
        float(g.mean(0).std() / sd),
        float(g.mean(1).std() / sd),
        float((g - cv2.GaussianBlur(g, (0, 0), 1.0)).std() / sd),
    ]
    return np.nan_to_num(np.asarray(feats, np.float64), posinf=0.0, neginf=0.0)


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    sa, sb = a.std(), b.std()
    if sa < 1e-9 or sb < 1e-9:
        return 1.0
    return float(((a - a.mean()) * (b - b.mean())).mean() / (sa * sb))


def _spectrum_features(centred: np.ndarray) -> list[float]:
    """Log shares of the power in :data:`BANDS`, orientation shares and spectral peakiness."""
    h, w = centred.shape
    hann = np.outer(np.hanning(h), np.hanning(w))
    power = np.abs(np.fft.fft2(centred * hann)) ** 2
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.fftfreq(w)[None, :]
    radius = np.hypot(fx, fy)
    power[0, 0] = 0.0
    total = power.sum() + 1e-12
    out = [
        float(np.log(power[(radius >= lo) & (radius < hi)].sum() / total + 1e-9))
        for lo, hi in itertools.pairwise(BANDS)
    ]
    angle = np.degrees(np.arctan2(np.abs(fy), np.abs(fx)))
    ring = radius >= BANDS[2]
    ring_total = power[ring].sum() + 1e-12
    out += [
        float(power[ring & (angle < 15)].sum() / ring_total),
        float(power[ring & (angle > 75)].sum() / ring_total),
        float(power[ring & (angle > 30) & (angle < 60)].sum() / ring_total),
        float(np.log((power.max() + 1e-9) / (power.mean() + 1e-9))),
    ]
    return out


def sample_windows(
    paths: list[Path], source: list[str], size: int, per_frame: int, seed: int
) -> Windows:
    """Features of up to ``per_frame`` windows per frame (frames smaller than ``size`` in
    either side are skipped, as are unreadable ones, with a note on stderr)."""
    rng = np.random.default_rng(seed)
    rows, groups, names = [], [], []
    for index, (path, name) in enumerate(zip(paths, source, strict=True)):
        try:
            frame = read_frame_rgb(path)
        except FrameReadError as exc:
            print(f"skipped: {exc}", file=sys.stderr)
            continue
        h, w = frame.shape[:2]
        if h < size or w < size:
            print(f"skipped: {path}: {w}x{h} is smaller than the window", file=sys.stderr)
            continue
        for _ in range(per_frame):
            y, x = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
            rows.append(texture_features(frame[y : y + size, x : x + size]))
            groups.append(index)
            names.append(name)
    return Windows(np.asarray(rows).reshape(len(rows), -1), np.asarray(groups), names)


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1.0, steps: int = 25) -> np.ndarray:
    """L2-regularised logistic regression by Newton steps: weights ``[F + 1]`` (bias last) for
    standardised features ``x [N, F]`` and labels ``y [N]`` in {0, 1}."""
    a = np.hstack([x, np.ones((len(x), 1))])
    wt = np.zeros(a.shape[1])
    reg = np.full(a.shape[1], l2)
    reg[-1] = 0.0
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-np.clip(a @ wt, -30, 30)))
        grad = a.T @ (p - y) + reg * wt
        hess = (a * (p * (1 - p))[:, None]).T @ a + np.diag(reg + 1e-9)
        step = np.linalg.solve(hess, grad)
        wt -= step
        if np.abs(step).max() < 1e-8:
            break
    return wt


def _standardise(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mu, sd = train.mean(0), train.std(0) + 1e-9
    return (train - mu) / sd, (test - mu) / sd


def grouped_folds(groups: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Fold index ``[N]`` per row: whole groups are dealt to folds in a seeded random order."""
    unique = np.unique(groups)
    order = np.random.default_rng(seed).permutation(unique)
    fold_of = {int(g): i % folds for i, g in enumerate(order)}
    return np.array([fold_of[int(g)] for g in groups])


def cross_validate(
    x: np.ndarray, y: np.ndarray, groups: np.ndarray, folds: int, seed: int, l2: float
) -> np.ndarray:
    """Out-of-fold predicted labels ``[N]`` (0/1) with folds grouped by ``groups``."""
    fold = grouped_folds(groups, folds, seed)
    pred = np.zeros(len(y), int)
    for k in range(folds):
        test = fold == k
        if not test.any():
            continue
        tr, te = _standardise(x[~test], x[test])
        wt = fit_logistic(tr, y[~test], l2)
        pred[test] = (np.hstack([te, np.ones((len(te), 1))]) @ wt > 0).astype(int)
    return pred


def _real_frames(folders: list[str]) -> tuple[list[Path], list[str]]:
    paths, names = [], []
    for folder in folders:
        found = discover_frames([folder])
        paths += found
        names += [Path(folder).name] * len(found)
    return paths, names


def _synth_frames(args: argparse.Namespace, tmp: str) -> list[Path]:
    if args.synth:
        return discover_frames([args.synth], recursive=True)
    out = Path(tmp) / "synth"
    cmd = [sys.executable, "-m", "fabricnms", "synth", str(out), "--images", str(args.synth_frames)]
    cmd += ["--seed", str(args.synth_seed), *args.synth_arg]
    print("synthetic frames: " + " ".join(cmd[1:]), file=sys.stderr)
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"synth failed: {done.stderr.strip().splitlines()[-1:]}")
    return discover_frames([str(out)], recursive=True)


def geometry_table(tsv: str, release: str) -> str:
    """The per-category box geometry real vs synthetic with its pass / fail against the
    issue's bounds: ``benchmarks/synth_geometry.py`` on the release ``release`` (``--synth``)
    or, without one, on 200,000 boxes of the generator's own sampler (what ``synth`` draws)."""
    script = Path(__file__).with_name("synth_geometry.py")
    cmd = [sys.executable, str(script), tsv, *(["--release", release] if release else [])]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"synth_geometry failed: {done.stderr.strip().splitlines()[-1:]}")
    return done.stdout


def run(args: argparse.Namespace) -> dict:
    """Sample both sides, cross-validate, fit on all; the figures :func:`render` prints."""
    real_paths, real_names = _real_frames(args.real)
    with tempfile.TemporaryDirectory() as tmp:
        synth_paths = _synth_frames(args, tmp)
        n = min(len(real_paths), len(synth_paths))
        pick = np.random.default_rng(args.seed).permutation(len(real_paths))[:n]
        real = sample_windows(
            [real_paths[i] for i in sorted(pick)],
            [real_names[i] for i in sorted(pick)],
            args.window,
            args.per_frame,
            args.seed,
        )
        synth = sample_windows(
            synth_paths[:n], ["synthetic"] * n, args.window, args.per_frame, args.seed + 1
        )
    x = np.vstack([real.x, synth.x])
    y = np.r_[np.ones(len(real.x), int), np.zeros(len(synth.x), int)]
    groups = np.r_[real.group, synth.group + len(real_paths)]
    sources = real.source + synth.source
    pred = cross_validate(x, y, groups, args.folds, args.seed, args.l2)
    per_source = {
        name: float((pred[[s == name for s in sources]] == 1).mean())
        for name in dict.fromkeys(sources)
    }
    full, _ = _standardise(x, x)
    wt = fit_logistic(full, y, args.l2)[:-1]
    top = np.argsort(-np.abs(wt))[:6]
    return {
        "accuracy": float((pred == y).mean()),
        "windows": {"real": len(real.x), "synthetic": len(synth.x)},
        "frames": {"real": len(np.unique(real.group)), "synthetic": len(np.unique(synth.group))},
        "taken_for_real": per_source,
        "top_features": [(feature_names()[i], float(wt[i])) for i in top],
    }


def render(result: dict, args: argparse.Namespace) -> str:
    """The Markdown table of :func:`run`'s figures."""
    w, f = result["windows"], result["frames"]
    lines = [
        f"domain classifier (logistic regression on {len(feature_names())} texture statistics, "
        f"{args.folds}-fold CV grouped by frame): accuracy {result['accuracy']:.3f} "
        f"(0.5 = indistinguishable; {w['real']} real windows of {f['real']} frames, "
        f"{w['synthetic']} synthetic of {f['synthetic']}, {args.window} px)",
        "",
        "| windows of | taken for real |",
        "|---|---|",
        *(f"| {k} | {v:.2f} |" for k, v in result["taken_for_real"].items()),
        "",
        "most separating features (standardised coefficient, + = real): "
        + ", ".join(f"{n} {c:+.2f}" for n, c in result["top_features"]),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("real", nargs="+", help="folders of real frames")
    parser.add_argument("--synth", default="", help="an existing synth release (else made)")
    parser.add_argument("--synth-frames", type=int, default=60)
    parser.add_argument("--synth-seed", type=int, default=0)
    parser.add_argument(
        "--synth-arg", action="append", default=[], help="extra synth option (repeat)"
    )
    parser.add_argument("--window", type=int, default=256)
    parser.add_argument("--per-frame", type=int, default=8)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--l2", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--tsv", default="", help="tianchi_round1_boxes.tsv: also print the geometry table"
    )
    args = parser.parse_args(argv)
    if args.tsv:
        print(geometry_table(args.tsv, args.synth))
    print(render(run(args), args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
