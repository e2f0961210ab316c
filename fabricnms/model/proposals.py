"""Seeded synthetic proposal sets that mimic a dense detector's raw output.

They exercise the NMS methods without a network (tests and ``benchmarks/bench_nms.py``): each
true defect gets a cluster of jittered candidates, long thin defects also get fragments
(candidates that cover only part of the line), and the frame gets low-scoring clutter. The
one-to-one scores come in three flavours: ``"trained"`` (one good member per defect scores
high, as a trained o2o branch gives), ``"noisy"`` (o2o is a weak, noisy copy of o2m, so several
members per defect look like hypotheses) and ``"untrained"`` (o2o knows nothing yet, as early in
training or from a random init: every candidate and class scores 0.1-0.5, so every candidate is
a hypothesis above the DNMS floor).

Boxes are xyxy pixels; labels 0-based; all scores are probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from fabricnms.model.boxes import pairwise_iou

O2O_FLAVOURS = ("trained", "noisy", "untrained")


@dataclass
class ProposalSet:
    """One image's candidates plus the truth they were drawn from.

    boxes ``[N, 4]``; scores_o2m / scores_o2o ``[N, C]``; quality ``[N]``; embed ``[N, D]``;
    gt_boxes ``[G, 4]``; gt_labels ``[G]``.
    """

    boxes: Tensor
    scores_o2m: Tensor
    scores_o2o: Tensor
    quality: Tensor
    embed: Tensor
    gt_boxes: Tensor
    gt_labels: Tensor


def random_defects(
    num: int,
    num_classes: int,
    gen: torch.Generator,
    width: int = 2446,
    height: int = 1000,
    line_fraction: float = 0.3,
) -> tuple[Tensor, Tensor]:
    """``num`` random true boxes ``[G, 4]`` and labels ``[G]`` in a ``width x height`` frame.

    A ``line_fraction`` of them are long thin lines (about 30 x 900 px, horizontal or vertical);
    the rest are blobs of 15-200 px sides.
    """
    boxes = []
    for _ in range(num):
        r = torch.rand(4, generator=gen)
        if float(r[0]) < line_fraction:
            length = 600 + 600 * float(r[1])
            thick = 20 + 20 * float(r[2])
            w, h = (length, thick) if float(r[3]) < 0.5 else (thick, min(length, height - 10))
        else:
            w, h = 15 + 185 * float(r[1]), 15 + 185 * float(r[2])
        x = float(torch.rand(1, generator=gen)) * (width - w)
        y = float(torch.rand(1, generator=gen)) * (height - h)
        boxes.append([x, y, x + w, y + h])
    labels = torch.randint(0, num_classes, (num,), generator=gen)
    return torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), labels


def simulate(
    gt_boxes: Tensor,
    gt_labels: Tensor,
    num_classes: int,
    gen: torch.Generator,
    per_object: int = 15,
    clutter: int = 40,
    o2o: str = "trained",
    embed_dim: int = 32,
    jitter: float = 0.08,
    width: int = 2446,
    height: int = 1000,
) -> ProposalSet:
    """Candidates around ``gt_boxes [G, 4]`` (labels ``[G]``), see the module docstring.

    ``per_object`` candidates per defect (lines: half full-length, half fragments covering
    20-50 % of the line), ``clutter`` background candidates, ``jitter`` the std of each
    coordinate as a fraction of the box side.
    """
    if o2o not in O2O_FLAVOURS:
        raise ValueError(f"o2o must be one of {', '.join(O2O_FLAVOURS)}, got {o2o!r}")
    boxes, owner, frag = [], [], []
    for g, box in enumerate(gt_boxes):
        x1, y1, x2, y2 = box.tolist()
        w, h = x2 - x1, y2 - y1
        is_line = max(w, h) / min(w, h) >= 8
        n_frag = per_object // 2 if is_line else 0
        for j in range(per_object):
            noise = torch.randn(4, generator=gen) * jitter
            b = [x1 + noise[0] * w, y1 + noise[1] * h, x2 + noise[2] * w, y2 + noise[3] * h]
            if j < n_frag:  # a piece of the line: cut along its long axis
                a, c = (0, 2) if w > h else (1, 3)
                length = max(w, h)
                span = length * (0.2 + 0.3 * float(torch.rand(1, generator=gen)))
                start = float(box[a]) + float(torch.rand(1, generator=gen)) * (length - span)
                b[a], b[c] = start, start + span
            boxes.append(b)
            owner.append(g)
            frag.append(j < n_frag)
    for _ in range(clutter):
        r = torch.rand(4, generator=gen)
        bw, bh = 10 + 150 * float(r[0]), 10 + 150 * float(r[1])
        x, y = float(r[2]) * (width - bw), float(r[3]) * (height - bh)
        boxes.append([x, y, x + bw, y + bh])
        owner.append(-1)
        frag.append(False)
    n, c = len(boxes), num_classes
    bx = torch.tensor(boxes, dtype=torch.float32).reshape(n, 4)
    bx = torch.stack(
        [
            bx[:, 0],
            bx[:, 1],
            torch.maximum(bx[:, 2], bx[:, 0] + 2),
            torch.maximum(bx[:, 3], bx[:, 1] + 2),
        ],
        dim=1,
    )
    owner_t = torch.tensor(owner, dtype=torch.long)
    fg = owner_t >= 0
    iou = torch.zeros(n)
    if bool(fg.any()):
        iou[fg] = pairwise_iou(bx[fg], gt_boxes)[torch.arange(int(fg.sum())), owner_t[fg]]
    quality = (iou + 0.05 * torch.randn(n, generator=gen)).clamp(0.0, 1.0)
    quality[~fg] = 0.3 * torch.rand(int((~fg).sum()), generator=gen)

    label = torch.where(
        fg, gt_labels[owner_t.clamp(min=0)], torch.randint(0, c, (n,), generator=gen)
    )
    o2m = 0.03 * torch.rand(n, c, generator=gen)
    top = (0.3 + 0.6 * iou + 0.1 * torch.randn(n, generator=gen)).clamp(0.05, 0.99)
    top[~fg] = 0.01 + 0.14 * torch.rand(int((~fg).sum()), generator=gen)
    o2m[torch.arange(n), label] = top

    if o2o == "trained":
        o2o_s = 0.04 * o2m
        for g in range(len(gt_boxes)):
            members = torch.nonzero((owner_t == g) & ~torch.tensor(frag)).flatten()
            if members.numel() == 0:
                continue
            # A trained o2o branch picks a good (not necessarily the best) member.
            best = members[iou[members].topk(min(3, members.numel())).indices]
            pick = best[torch.randint(0, best.numel(), (1,), generator=gen)]
            o2o_s[pick, gt_labels[g]] = 0.6 + 0.35 * float(torch.rand(1, generator=gen))
    elif o2o == "noisy":
        o2o_s = o2m * (0.2 + 0.6 * torch.rand(n, 1, generator=gen))
    else:
        o2o_s = 0.1 + 0.4 * torch.rand(n, c, generator=gen)

    # Members of one defect share a prototype embedding; clutter embeddings are random.
    proto = torch.randn(len(gt_boxes) + n, embed_dim, generator=gen)
    proto = torch.nn.functional.normalize(proto, dim=1)
    emb = proto[torch.where(fg, owner_t, len(gt_boxes) + torch.arange(n))]
    emb = emb + 0.3 * torch.randn(n, embed_dim, generator=gen) / max(embed_dim, 1) ** 0.5
    emb = torch.nn.functional.normalize(emb, dim=1)
    return ProposalSet(bx, o2m, o2o_s, quality, emb, gt_boxes, gt_labels)
