"""Second guesses at a DNMS detection's class, from the class evidence of its plan rows.

A DNMS detection is one plan column: the rows the plan gave it carry a class distribution,
``U_j(c) = sum_i P_ij sqrt(o2m_i(c) q_i) / sum_i P_ij`` (the plan-weighted mean evidence of
class ``c``; :func:`fabricnms.model.dnms_fusion.class_evidence`). The detection's label is its
argmax. When two classes are close (a warp line read as broken or loose warp, a mark or a
stain), the runner-up is often right; ranking metrics (COCO AP, the Tianchi mAP) credit a second
guess, as the multi-class candidates of greedy NMS (``--top-classes``) do. :func:`add_class_guesses`
adds, for each detection, its next best classes on the same box, each scored by its evidence
``U_j(c)`` capped at the detection's own score, so a guess never outranks its detection and the
frame's best score (hence the frame verdict) is unchanged.

Boxes are ``xyxy`` pixels; labels 0-based.
"""

from __future__ import annotations

import torch

from fabricnms.model.types import Detections

EVIDENCE_KEY = "class_evidence"


def add_class_guesses(det: Detections, top_classes: int) -> Detections:
    """``det`` plus up to ``top_classes - 1`` more classes per detection, sorted by score.

    Args:
        det: detections whose ``extra["class_evidence"]`` is ``[K, C]`` (``U_j(c)`` above).
        top_classes: classes per detection, the detection's own label first (1: ``det``).

    Returns:
        Detections ``[K', ...]``, ``K <= K' <= K * top_classes``: every detection, and for each
        its next best classes with ``U_j(c) > 0`` at score ``min(U_j(c), score_j)``, same box
        and extras; sorted by descending score (a detection before its own guesses on ties).
    """
    if top_classes <= 1 or len(det) == 0:
        return det
    evidence = det.extra[EVIDENCE_KEY]
    others = evidence.scatter(1, det.labels[:, None], -1.0)
    value, label = others.topk(min(top_classes - 1, evidence.shape[1] - 1), dim=1)  # [K, T]
    ok = value > 0
    rows = torch.arange(len(det), device=det.scores.device)[:, None].expand_as(label)[ok]
    guesses = det.select(rows)
    guesses.labels = label[ok]
    guesses.scores = torch.minimum(value[ok], det.scores[rows])
    merged = Detections(
        boxes=torch.cat([det.boxes, guesses.boxes]),
        scores=torch.cat([det.scores, guesses.scores]),
        labels=torch.cat([det.labels, guesses.labels]),
        extra={k: torch.cat([v, guesses.extra[k]]) for k, v in det.extra.items()},
    )
    return merged.select(merged.scores.argsort(descending=True, stable=True))
