"""Second class guesses of DNMS detections (fabricnms.model.class_guesses)."""

from __future__ import annotations

import torch

from fabricnms.model.class_guesses import EVIDENCE_KEY, add_class_guesses
from fabricnms.model.types import Detections


def _two_detections() -> Detections:
    evidence = torch.tensor(
        [
            [0.70, 0.50, 0.10, 0.00],  # label 0; runner-up 1 (0.5), then 2 (0.1)
            [0.00, 0.00, 0.30, 0.00],  # label 2; no other class has evidence
        ]
    )
    return Detections(
        boxes=torch.tensor([[0.0, 0.0, 10.0, 10.0], [50.0, 0.0, 60.0, 900.0]]),
        scores=torch.tensor([0.8, 0.2]),
        labels=torch.tensor([0, 2]),
        extra={EVIDENCE_KEY: evidence, "index": torch.tensor([7, 3])},
    )


def test_one_class_is_the_input() -> None:
    det = _two_detections()
    assert add_class_guesses(det, 1) is det


def test_guesses_take_the_next_classes_at_their_evidence() -> None:
    out = add_class_guesses(_two_detections(), 3)
    # detection 0 + its guesses 1 (0.5) and 2 (0.1); detection 1 has no other class
    assert out.labels.tolist() == [0, 1, 2, 2]
    assert torch.allclose(out.scores, torch.tensor([0.8, 0.5, 0.2, 0.1]))
    assert out.extra["index"].tolist() == [7, 7, 3, 7]
    assert torch.equal(out.boxes[1], out.boxes[0])
    assert torch.equal(out.boxes[3], out.boxes[0])


def test_a_guess_never_outranks_its_detection() -> None:
    det = _two_detections()
    det.extra[EVIDENCE_KEY][1] = torch.tensor([0.9, 0.0, 0.3, 0.0])  # runner-up above 0.2
    out = add_class_guesses(det, 2)
    guess = (out.extra["index"] == 3) & (out.labels == 0)
    assert float(out.scores[guess]) == float(det.scores[1])  # capped at its detection's score
    assert float(out.scores.max()) == float(det.scores[0])  # the frame's best score is unchanged


def test_empty_detections_pass_through() -> None:
    empty = Detections.empty()
    assert len(add_class_guesses(empty, 3)) == 0
