"""How often the motion gate (edge.motion) would skip the detector, per clip, on the file's own clock.

    .venv/bin/python tools/gate_skips.py                   # every labelled clip, plus the bench_edge cameras
    .venv/bin/python tools/gate_skips.py --fps 2 --gate '{min_changed: 0.01}'

For each labelled clip (eval/labels/) the camera is the one tools/eval_accuracy.py generates (same zones), and for
each tools/bench_edge.py clip the bench's zones; the gate has the product's defaults, merged with ``--gate``. Frames
are taken at ``--fps`` by their timestamps, so the figure does not depend on how loaded the machine is. A skipped
frame is one the detector would not have seen (the worker reuses the last detections for it); what that does to
accuracy is measured by tools/eval_accuracy.py with ``motion_gate: {enabled: true}``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge.config import CameraConfig, parse_config  # noqa: E402
from edge.motion import MotionGate  # noqa: E402
from tools.accuracy.labels import all_labels  # noqa: E402
from tools.accuracy.runner import case_config  # noqa: E402
from tools.bench_edge import BENCH_ZONES, MEDIA  # noqa: E402


def frames_at(path: Path, fps: float) -> Iterator[tuple[float, np.ndarray]]:
    """(seconds, BGR image) of the first frame at or after each 1/fps step of the clip's timestamps."""
    container = av.open(str(path))
    try:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        due = 0.0
        for frame in container.decode(stream):
            if frame.pts is None:
                continue
            t = float(frame.pts * frame.time_base)
            if t + 1e-6 < due:
                continue
            while due <= t + 1e-6:  # a fixed grid of 1/fps steps, like the edge's sampler
                due += 1 / fps
            yield t, frame.to_ndarray(format="bgr24")
    finally:
        container.close()


def skipped(cam: CameraConfig, path: Path, fps: float, gate: dict) -> tuple[int, int]:
    """(frames the gate would skip, frames sampled)."""
    cfg = cam.motion_gate.model_copy(update={**gate, "enabled": True})
    motion = MotionGate(cfg, cam)
    seen = skip = 0
    for t, image in frames_at(path, fps):
        seen += 1
        skip += not motion.should_detect(image, t)
    return skip, seen


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fps", type=float, default=1.0)
    ap.add_argument("--gate", type=yaml.safe_load, default={}, help="motion_gate keys, e.g. '{min_rate_s: 10}'")
    args = ap.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="gw-gate-"))
    total_skip = total_seen = 0
    print(f"eval_accuracy cameras (eval/labels/), {args.fps:g} fps:")
    for labels in all_labels():
        cam = parse_config(case_config(labels, MEDIA, args.fps, {}, workdir), source="gate_skips").cameras[0]
        skip, seen = skipped(cam, MEDIA / labels.clip, args.fps, args.gate)
        total_skip, total_seen = total_skip + skip, total_seen + seen
        print(f"  {labels.clip:<36} {skip:>4}/{seen:<4} skipped ({100 * skip / max(seen, 1):.0f} %)")
    print(
        f"  {'all labelled clips':<36} {total_skip:>4}/{total_seen:<4} skipped "
        f"({100 * total_skip / max(total_seen, 1):.0f} %)"
    )
    print("bench_edge cameras (tools/bench_edge.py zones):")
    for clip, zones in BENCH_ZONES.items():
        doc = {"edge_id": "gate-skips", "cameras": [{"id": "bench", "url": str(MEDIA / clip), "zones": zones}]}
        cam = parse_config(doc, source="gate_skips").cameras[0]
        skip, seen = skipped(cam, MEDIA / clip, args.fps, args.gate)
        print(f"  {clip:<36} {skip:>4}/{seen:<4} skipped ({100 * skip / max(seen, 1):.0f} %)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
