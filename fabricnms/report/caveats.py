"""Caveats of a roll verdict: what a PASS or FAIL rests on that nobody measured or checked.

A verdict with at least one caveat is *provisional*: every place that shows the verdict (the
``predict`` summary line, ``summary.json``, ``roll_report.json``, ``roll_report.html``) shows
"provisional" and each caveat's message next to it, and ``predict --fail-on-provisional``
exits 3 on it as on a FAIL. Any stage may add one (:attr:`RollReport.caveats
<fabricnms.report.roll.RollReport.caveats>` is a plain list): a caveat is a stable ``code``
for scripts and a one-sentence ``message`` for people.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from fabricnms.engine.operating_point import ConfChoice
from fabricnms.report.calibration import Calibration
from fabricnms.report.grading import LIMIT_UNIT_LABELS
from fabricnms.report.records import FrameRecord

#: A roll of at least this many frames in which the model found nothing gets a caveat.
EMPTY_ROLL_MIN_FRAMES = 5


@dataclass(frozen=True)
class Caveat:
    """One reason to doubt a verdict: ``code`` (e.g. ``"calibration_assumed"``) and
    ``message`` (one sentence saying what was assumed and how to remove the doubt)."""

    code: str
    message: str

    def to_dict(self) -> dict[str, str]:
        """``{"code", "message"}``."""
        return asdict(self)

    @staticmethod
    def from_dict(obj: dict[str, Any]) -> Caveat:
        """Inverse of :meth:`to_dict`."""
        return Caveat(str(obj["code"]), str(obj["message"]))


#: ``adapt``'s self-check below this share of painted defects found gets a caveat: "close to
#: blind". Chosen after seeing the real sets: at 0.3 it also fired on the stains models adapted
#: at the goal's budget (13-27 % painted, 59-73 % of the real stains found); see
#: :mod:`fabricnms.engine.adapt_check` for why the check is one-sided.
LOW_PAINTED_RECALL = 0.1

#: The threshold in force is the built-in default: no calibrated operating point, no --conf.
NO_OPERATING_POINT = Caveat(
    "no_operating_point",
    "the model has no calibrated operating point: the built-in score threshold was used; "
    "calibrate one (fabricnms calibrate) or pass --conf",
)


def operating_point_caveats(choice: ConfChoice) -> list[Caveat]:
    """Caveats of the threshold in force: the built-in default; the checkpoint's operating
    point resting on too little fabric to show its false-alarm budget; or finding under
    :data:`LOW_PAINTED_RECALL` of the defects painted into held-out fabric (``adapt``'s
    self-check)."""
    if choice.origin == "default":
        return [NO_OPERATING_POINT]
    if choice.origin != "checkpoint":
        return []
    point, out = choice.point, []
    note = point.unshown()
    if note is not None:
        out.append(
            Caveat(
                "operating_point_unshown",
                f"the operating point's budget, {point.false_alarms_per_frame:g} false alarms "
                f"per 2446x1000, rests on too little clean fabric: {note}; calibrate on more "
                "clean fabric or allow a larger --false-alarms budget",
            )
        )
    recall = point.painted_recall
    if recall is not None and recall < LOW_PAINTED_RECALL:
        out.append(
            Caveat(
                "operating_point_blind",
                f"at its operating point the model finds only {recall:.0%} of "
                f"{point.painted_defects} defects painted into held-out parts of its fabric: it "
                "is close to blind on this fabric at this threshold; adapt with a larger "
                "--false-alarms budget (a strict one on little clean fabric sets the threshold "
                "above them) or on more clean frames",
            )
        )
    return out


def calibration_caveat(calibration: Calibration) -> Caveat | None:
    """A caveat when the px/mm scale was assumed rather than given."""
    if not calibration.assumed:
        return None
    return Caveat(
        "calibration_assumed",
        f"scale assumed, not measured: {calibration.px_per_mm_x:g} px/mm (the Tianchi frames' "
        "value); defect sizes, points and the score scale with it: pass --px-per-mm",
    )


def roll_order_caveat(assumed: bool) -> Caveat | None:
    """A caveat when a folder was taken to be one roll without being told so."""
    if not assumed:
        return None
    return Caveat(
        "roll_assumed",
        "the folder's frames were taken as one roll, consecutive in file-name order: "
        "pass --roll to confirm it (or --no-roll)",
    )


def empty_roll_caveat(frames: Sequence[FrameRecord]) -> Caveat | None:
    """A caveat when the model found nothing at all in a roll of many frames: a model that
    does not suit the fabric (or a threshold set too high) looks exactly like clean fabric."""
    if len(frames) < EMPTY_ROLL_MIN_FRAMES or any(f.detections for f in frames):
        return None
    return Caveat(
        "no_detections",
        f"the model found nothing in any of the {len(frames)} frames: a model or threshold that "
        "does not suit this fabric finds nothing too; check it on frames with known defects",
    )


def verdict_lines(roll: dict[str, Any]) -> list[str]:
    """The roll verdict as ``predict`` prints it, from its summary (``summary.json``'s
    ``roll``): ``Roll: PASS (provisional), ...`` then one ``  caveat: ...`` line per caveat."""
    unit = LIMIT_UNIT_LABELS.get(roll["limit_unit"], roll["limit_unit"])
    also = "" if roll["limit_unit"] == "100yd2" else f"; {roll['points_per_100_yd2']:g} per 100 yd²"
    caveats = roll.get("caveats", [])
    return [
        f"Roll: {roll['verdict']}{' (provisional)' if caveats else ''}, {roll['score']:g} points "
        f"per {unit} (limit {roll['limit']:g}, {roll['system']} grading{also}), "
        f"{roll['defects']} defects over {roll['length_m']:g} m",
        *(f"  caveat: {c['message']}" for c in caveats),
    ]
