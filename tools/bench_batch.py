"""SSD MobileNet V2 throughput and memory per forward-pass batch size (the basis of ``detector.max_batch``).

    .venv/bin/python tools/bench_batch.py                  # batch sizes 1 2 4 8 16 32, 8 s each
    .venv/bin/python tools/bench_batch.py --sizes 1 4 16 --seconds 5

Each size runs in a fresh process, because OpenCV DNN keeps the activations of the largest batch it has seen:
the RSS growth printed is what that batch size costs for the life of the process.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLIP = ROOT.parent / "shared" / "media" / "crowd_plaza_1.mp4"


def measure(batch: int, seconds: float) -> str:
    import cv2
    import psutil

    sys.path.insert(0, str(ROOT))
    from edge.detectors.ssd import SsdMobileNetV2

    cap = cv2.VideoCapture(str(CLIP))
    ok, image = cap.read()
    if not ok:
        raise SystemExit(f"cannot read {CLIP}")
    detector = SsdMobileNetV2(0.3)
    proc = psutil.Process()
    rss0 = proc.memory_info().rss / 2**20
    detector.detect_batch([image] * batch)  # warm-up allocates the activations
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        detector.detect_batch([image] * batch)
        done += batch
    fps = done / (time.perf_counter() - start)
    return f"batch {batch:>3}: {fps:6.1f} frames/s   RSS +{proc.memory_info().rss / 2**20 - rss0:5.0f} MiB"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: measure one size in this process
    args = ap.parse_args()
    if args.one:
        print(measure(args.one, args.seconds))
        return 0
    for size in args.sizes:
        out = subprocess.run([sys.executable, __file__, "--one", str(size), "--seconds", str(args.seconds)],
                             capture_output=True, text=True, check=True)
        print(out.stdout.strip(), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
