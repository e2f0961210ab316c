"""What ``fabricnms predict`` prints at the end: counts, speed, skipped frames, the verdict."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def render_summary(summary: dict[str, Any], max_listed: int = 10) -> None:
    """Frames, defects per class, speed, skipped frames and the roll verdict, on stderr."""
    from fabricnms.log import console

    def say(text: str) -> None:
        console.print(text, markup=False, soft_wrap=True, highlight=False)

    extra = [f"{len(summary['skipped'])} skipped"] if summary["skipped"] else []
    if summary["resumed"]:
        extra.append(f"{summary['resumed']} written before the resume")
    if summary["shard"]:
        extra.append(f"shard {summary['shard']} of {summary['discovered']} frames")
    by_class = ", ".join(f"{c} {n}" for c, n in summary["defects_by_class"].items())
    say(
        f"{summary['processed']} frames"
        + (f" ({', '.join(extra)})" if extra else "")
        + f": {summary['frames_with_defects']} with defects, {summary['detections']} defects"
        + (f": {by_class}" if by_class else "")
    )
    if summary["frames_per_second"]:  # this session processed frames
        ms = summary["ms_per_frame"]
        speed = (
            f"Speed per frame: {ms['preprocess']:.1f} ms preprocess, {ms['inference']:.1f} ms "
            f"inference, {ms['postprocess']:.1f} ms postprocess, {ms['write']:.1f} ms write "
            f"(tile {summary['tile']}, {summary['device']}); "
            f"{summary['frames_per_second']:.2f} frames/s end to end"
        )
        if summary["metres_per_minute"] is not None:
            speed += f", {summary['metres_per_minute']:.2f} m of fabric/min"
        say(speed)
    say(summary["threshold"]["line"])
    shift = summary.get("fabric_shift")
    if shift and shift["warning"]:
        say(
            f"Fabric shift: {shift['warning']} (median frame {shift['median']:g} > limit "
            f"{shift['limit']:g}; {shift['frames_above']}/{shift['frames_scored']} frames above)"
        )
    edges = summary.get("fabric_edges")
    if edges and edges["warning"]:
        say(f"Fabric edge: {edges['warning']}")
    if summary["skipped"]:
        say(f"Skipped {len(summary['skipped'])} unreadable frame(s):")
        for item in summary["skipped"][:max_listed]:
            say(f"  {item['error']}")
        if len(summary["skipped"]) > max_listed:
            say(f"  ... all listed in {Path(summary['out_dir']) / 'summary.json'}")
    if summary["roll"] is not None:
        from fabricnms.report.caveats import verdict_lines

        for line in verdict_lines(summary["roll"]):
            say(line)
    names = [
        Path(p).name + ("/" if k == "overlays" else "")
        for k, p in sorted(summary["outputs"].items())
        if k != "journal"
    ]
    if names:
        say("Wrote " + ", ".join(names))
