"""CPU cost of the parking rule's appearance evidence, against detection, on real footage.

    .venv/bin/python tools/bench_appearance.py                 # the labelled vehicle clips at 2 fps
    .venv/bin/python tools/bench_appearance.py --fps 5 --repeat 5

For each clip: detect every sampled frame once (timed), then replay the same tracked detections through
a RuleEngine with the labelled parking and negative zones (tools/accuracy/runner.py builds the same zones),
once with the frames (appearance evidence on) and once without (detections only), ``--repeat`` times each,
interleaved. Prints per frame: detection ms, rules ms with and without images, and the appearance share =
(rules with images − rules without) / detection. The appearance work is per camera and per frame, so the
share is the same at 1 or 16 cameras; it grows with the number of remembered vehicles per zone.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge.config import parse_config  # noqa: E402
from edge.rules import NO_SCENE, RuleEngine, Scene  # noqa: E402
from tools.accuracy.labels import LABELS_DIR, REPO_ROOT, load_labels  # noqa: E402
from tools.accuracy.runner import EPOCH, case_config  # noqa: E402
from tools.bench_replay import detect_and_track  # noqa: E402

CLIPS = ["street_parking_residential_1", "traffic_intersection_cctv_1", "traffic_motorway_overpass_1"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", nargs="*", default=CLIPS)
    ap.add_argument("--fps", type=float, default=2.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--media-dir", type=Path, default=REPO_ROOT.parent / "shared" / "media")
    args = ap.parse_args()
    print(f"{'clip':<30} {'frames':>6} {'detect ms':>9} {'rules+img ms':>12} {'rules ms':>8} {'appearance share':>16}")
    for stem in args.clips:
        labels = load_labels(LABELS_DIR / f"{stem}.yaml")
        doc = case_config(labels, args.media_dir, args.fps, {}, Path("/tmp"))
        doc["cameras"][0]["zones"] = [z for z in doc["cameras"][0]["zones"] if z["type"] == "no_parking"]
        cfg = parse_config(doc)
        cam = cfg.cameras[0]
        clip = detect_and_track(cfg, args.fps)
        samples, front_end = clip.samples, clip.front_end
        with_img, without = [], []
        for _ in range(args.repeat):
            for scenes, out in ((True, with_img), (False, without)):
                engine = RuleEngine(cam, site=cfg.site, edge_id=cfg.edge_id, model_name="m", model_version="1")
                t0 = time.thread_time()
                for t, d, img in samples:
                    engine.update(
                        d, EPOCH + t, (img.shape[1], img.shape[0]), Scene(img, front_end.sizes) if scenes else NO_SCENE
                    )
                out.append((time.thread_time() - t0) / len(samples))
        n = len(samples)
        det_ms = clip.detect_s / n * 1000
        a, b = statistics.median(with_img) * 1000, statistics.median(without) * 1000
        print(f"{stem[:30]:<30} {n:>6} {det_ms:>9.1f} {a:>12.2f} {b:>8.2f} {(a - b) / det_ms:>16.1%}")


if __name__ == "__main__":
    main()
