"""YOLO ONNX back ends side by side: ONNX Runtime (before / tuned) and OpenVINO, on the shared model files.

    .venv/bin/python tools/bench_backends.py                          # every shared YOLO file, batch 1 and 4
    .venv/bin/python tools/bench_backends.py --models yolo26n-untrained-320.onnx --batch 1 --rounds 8

Every variant runs the full ``OnnxYolo.detect_batch`` (letterbox + conversion, forward pass, decoding) on real
frames of the sample clips (1280x720, 640x480, 480x360). Variants are interleaved round by round, so load from
other jobs on the box hits all of them alike; the figures are medians over rounds of wall ms and process CPU ms
per frame, and each variant's frames/s relative to the first variant of the same model and batch size.

Variants:
  ort-before   ONNX Runtime as it was configured before (library-default threads, spinning thread pool)
  ort          ONNX Runtime tuned: min(2, cores) intra-op threads, no spinning, sequential, all optimizations
  openvino     OpenVINO Runtime, one request on min(2, cores) threads, conversion compiled into the model
  openvino-2s  OpenVINO, two parallel requests (throughput mode), one thread each
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge.detectors.yolo_onnx import OnnxYolo  # noqa: E402
from tools.bench_edge import sample_frames  # noqa: E402

MODELS = ROOT.parent / "shared" / "models"
CLIPS = ["crowd_plaza_1.mp4", "traffic_intersection_cctv_1.mp4", "pedestrians_campus_cctv_4.avi"]
VARIANTS = ["ort-before", "ort", "openvino", "openvino-2s"]


def build(variant: str, model: Path) -> OnnxYolo:
    if variant.startswith("openvino"):
        return OnnxYolo(model, runtime="openvino", streams=2 if variant.endswith("2s") else 1)
    det = OnnxYolo(model, runtime="onnxruntime")
    if variant == "ort-before":  # the session options before this change
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        det.runner.session = ort.InferenceSession(str(model), sess_options=opts, providers=["CPUExecutionProvider"])
    return det


def cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="*", default=["yolo11n-untrained-640.onnx", "yolo26n-untrained-320.onnx",
                                                     "yolo26n-untrained-640-end2end.onnx"])
    ap.add_argument("--variants", nargs="*", default=VARIANTS, choices=VARIANTS)
    ap.add_argument("--batch", type=int, nargs="*", default=[1, 4])
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--frames", type=int, default=12, help="frames per variant per round")
    args = ap.parse_args()
    imgs = sample_frames(4, CLIPS)
    print(f"{os.cpu_count()} CPUs; {len(imgs)} real frames; {args.rounds} interleaved rounds of {args.frames} frames")
    print(f"{'model':<36}{'batch':>6}  {'variant':<12}{'wall ms/frame':>14}{'CPU ms/frame':>13}"
          f"{'preprocess ms':>14}{'frames/s':>9}{'vs first':>9}")
    for name in args.models:
        dets = {v: build(v, MODELS / name) for v in args.variants}
        for batch in args.batch:
            wall: dict[str, list[float]] = {v: [] for v in dets}
            cpu: dict[str, list[float]] = {v: [] for v in dets}
            pre: dict[str, list[float]] = {v: [] for v in dets}
            for det in dets.values():
                det.detect_batch(imgs[:batch])  # warm-up
            for _ in range(args.rounds):
                for v, det in dets.items():
                    done, w0, c0 = 0, time.perf_counter(), cpu_s()
                    while done < args.frames:
                        det.detect_batch([imgs[(done + k) % len(imgs)] for k in range(batch)])
                        pre[v].append(det.last_timings["preprocess"] / batch)
                        done += batch
                    wall[v].append((time.perf_counter() - w0) * 1000 / done)
                    cpu[v].append((cpu_s() - c0) * 1000 / done)
            first = None
            for v in dets:
                ms = statistics.median(wall[v])
                first = first or ms
                print(f"{name:<36}{batch:>6}  {v:<12}{ms:>14.1f}{statistics.median(cpu[v]):>13.1f}"
                      f"{statistics.median(pre[v]):>14.2f}{1000 / ms:>9.1f}{first / ms:>8.2f}x", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
