"""CPU per crowd zone update at 1 fps on real footage: the foreground estimate, with and without density per
ground cell.

    .venv/bin/python tools/bench_crowd.py                          # mall (640x480) and plaza (1280x720), 1 fps
    .venv/bin/python tools/bench_crowd.py --clips crowd_mall_cctv_1 --repeat 5 --cell-m 2

For each clip: detect and track every sampled frame once (the accuracy tool's generated camera: product defaults),
then replay the same frames and tracked detections through a RuleEngine holding only the clip's full-frame crowd
zone, ``--repeat`` times per variant, interleaved: ``area_m2`` (no cells), ``ground`` (the same zone with a ground
calibration, cut into ``--cell-m`` cells) and ``tracks`` (``count_method: tracks``, no foreground). The
calibration is made up (the frame's corners on a trapezoid of about 40 x 30 m, far edge wider): the cost depends on
the number of cells and foreground pixels, not on the true geometry. Prints the median ``time.thread_time`` per
update, the first 5 updates (no background yet) left out.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge.config import parse_config  # noqa: E402
from edge.rules import RuleEngine, Scene  # noqa: E402
from tools.accuracy.labels import LABELS_DIR, REPO_ROOT, load_labels  # noqa: E402
from tools.accuracy.runner import EPOCH, case_config  # noqa: E402
from tools.bench_replay import detect_and_track  # noqa: E402

CLIPS = ["crowd_mall_cctv_1", "crowd_plaza_1"]
GROUND = {"image_points": [[0, 0], [1, 0], [1, 1], [0, 1]], "ground_m": [[-5, 30], [45, 30], [35, 0], [5, 0]]}
WARMUP = 5


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", nargs="*", default=CLIPS)
    ap.add_argument("--fps", type=float, default=1.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cell-m", type=float, default=3.0)
    ap.add_argument("--media-dir", type=Path, default=REPO_ROOT.parent / "shared" / "media")
    args = ap.parse_args()
    print(f"{'clip':<22} {'size':>9} {'updates':>7} {'cells':>5} {'area_m2 ms':>10} {'ground ms':>9} {'tracks ms':>9}")
    for stem in args.clips:
        labels = load_labels(LABELS_DIR / f"{stem}.yaml")
        doc = case_config(labels, args.media_dir, args.fps, {}, Path("/tmp"))
        cam_doc = doc["cameras"][0]
        crowd = [z for z in cam_doc["zones"] if z["type"] == "crowd"][:1]
        variants = {
            "area_m2": crowd,
            "ground": [{**z, "area_m2": None, "ground": GROUND, "cell_m": args.cell_m} for z in crowd],
            "tracks": [{**z, "count_method": "tracks"} for z in crowd],
        }
        cameras = {}
        for name, zones in variants.items():
            d = copy.deepcopy(doc)
            d["cameras"][0]["zones"] = zones
            cameras[name] = parse_config(d)
        clip = detect_and_track(cameras["area_m2"], args.fps)
        samples, front_end = clip.samples, clip.front_end
        times: dict[str, list[float]] = {name: [] for name in variants}
        cells = 0
        for _ in range(args.repeat):
            for name, c in cameras.items():
                engine = RuleEngine(c.cameras[0], site=c.site, edge_id=c.edge_id, model_name="m", model_version="1")
                rule = next(iter(engine.rules.values()))
                cells = rule.cells.n if rule.cells is not None else cells
                for k, (t, dets, img) in enumerate(samples):
                    t0 = time.thread_time()
                    engine.update(dets, EPOCH + t, (img.shape[1], img.shape[0]), Scene(img, front_end.sizes))
                    if k >= WARMUP:
                        times[name].append(time.thread_time() - t0)
        ms = {name: statistics.median(v) * 1000 for name, v in times.items()}
        size = f"{samples[0][2].shape[1]}x{samples[0][2].shape[0]}"
        print(
            f"{stem[:22]:<22} {size:>9} {len(samples):>7} {cells:>5} {ms['area_m2']:>10.2f} {ms['ground']:>9.2f} "
            f"{ms['tracks']:>9.2f}"
        )


if __name__ == "__main__":
    main()
