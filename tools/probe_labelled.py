"""What the bare detector reports on each labelled vehicle: the best raw box over it, every few seconds.

    .venv/bin/python tools/probe_labelled.py street_parking_residential_1 --threshold 0.05 --every 3
    .venv/bin/python tools/probe_labelled.py street_parking_residential_1 --input-size 512 288
    .venv/bin/python tools/probe_labelled.py street_parking_residential_1 --zone-windows --every 10

``--zone-windows`` detects in the product's zoomed windows around the labelled parking zones
(``tiling.zone_windows``, edge/detectors/tiling.py) instead of the whole frame.

For each labelled vehicle present at a sampled time, prints the class and score of the most confident raw
SSD box (no class filter, no front end) that overlaps the labelled box by more than half of the smaller box
and is at least 0.3 of the labelled box's area, or "-" when there is none. It answers "is a missed car
the rule's fault or the detector's?" without running the rules.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge.config import DetectorConfig, TilingConfig, ZoneConfig  # noqa: E402
from edge.detectors import build_detector  # noqa: E402
from edge.detectors.postprocess import overlap_of_smaller  # noqa: E402
from tools.accuracy.labels import LABELS_DIR, REPO_ROOT, load_labels  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("clip", help="clip stem with a label file in eval/labels/")
    ap.add_argument("--threshold", type=float, default=0.05)
    ap.add_argument("--every", type=float, default=3.0, help="seconds between sampled frames")
    ap.add_argument("--input-size", type=int, nargs=2, metavar=("W", "H"))
    ap.add_argument("--zone-windows", action="store_true", help="detect in the windows around the parking zones only")
    ap.add_argument("--media-dir", type=Path, default=REPO_ROOT.parent / "shared" / "media")
    args = ap.parse_args()
    labels = load_labels(LABELS_DIR / f"{args.clip}.yaml")
    tiling = TilingConfig()
    if args.zone_windows:
        zones = [ZoneConfig(name=z.name, type="no_parking", points=z.points)
                 for z in labels.zones if z.kind == "parking"]
        tiling = TilingConfig(zone_windows=True, include_full_frame=False).with_zone_windows(zones)
    # no class filter and one threshold for every class: the raw view, through the product's windows and merging
    detector = build_detector(DetectorConfig(score_threshold=args.threshold, class_thresholds={}, tiling=tiling,
                                             input_size=tuple(args.input_size) if args.input_size else None))
    cap = cv2.VideoCapture(str(args.media_dir / labels.clip))
    found: dict[str, list[str]] = {v.id: [] for v in labels.vehicles}
    due = 0.0
    while cap.grab():
        t = cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
        if t < due:
            continue
        due = t + args.every
        _, img = cap.retrieve()
        h, w = img.shape[:2]
        dets = detector.detect(img)
        norm = dets.xyxy / np.array([w, h, w, h], dtype=np.float32)
        for v in labels.vehicles:
            if not v.present[0] <= t <= v.present[1]:
                continue
            vb = np.asarray(v.box)
            varea = (vb[2] - vb[0]) * (vb[3] - vb[1])
            best = max(((float(s), str(n)) for b, s, n in zip(norm, dets.scores, dets.class_names, strict=True)
                        if overlap_of_smaller(b, vb) > 0.5 and (b[2] - b[0]) * (b[3] - b[1]) >= 0.3 * varea),
                       default=None)
            found[v.id].append(f"{best[1]} {best[0]:.2f}" if best else "-")
    for vid, seen in found.items():
        print(f"{vid:<28} {', '.join(seen)}")


if __name__ == "__main__":
    main()
