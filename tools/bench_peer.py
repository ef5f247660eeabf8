"""GridWatch against ultralytics' own tracking pipeline on the same ONNX model, clip, thresholds and frames.

    .venv/bin/python tools/bench_peer.py                                   # ultralytics importable here
    .venv/bin/python tools/bench_peer.py --peer-python /tmp/ul/bin/python  # ultralytics in another venv
    .venv/bin/python tools/bench_peer.py --model yolo26n-untrained-320.onnx --clip crowd_plaza_1.mp4 --rounds 5

Both sides analyse every frame of the first ``--frames`` frames of the clip at batch 1, decoding the file
themselves, with the same confidence and NMS IoU thresholds and ByteTrack:

  gridwatch    edge.sources.CameraSource (fast playback, every frame) → build_detector (onnx_yolo, the default
               runtime) → edge.tracking.ByteTracker
  ultralytics  YOLO(model).track(source=clip, stream=True, tracker="bytetrack.yaml", conf, iou, imgsz)

Each side runs in its own process (so the two never share threads or caches), alternating order round by round
so load from other jobs hits both alike; frames/s excludes model loading and the first ``--warmup`` frames. Prints
the median frames/s of each side and their ratio. Ultralytics is optional (AGPL-3.0, pulls in torch): without it
the tool says so and exits 0.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT.parent / "shared" / "models"
MEDIA = ROOT.parent / "shared" / "media"


def run_gridwatch(model: Path, clip: Path, frames: int, warmup: int, conf: float, iou: float,
                  runtime: str = "auto") -> dict:
    sys.path.insert(0, str(ROOT))
    import cv2

    from edge.config import CameraConfig, DetectorConfig, TrackerConfig
    from edge.detectors import build_detector
    from edge.sources import open_source
    from edge.tracking import ByteTracker

    cap = cv2.VideoCapture(str(clip))
    fps = cap.get(cv2.CAP_PROP_FPS) or 30
    cap.release()
    detector = build_detector(DetectorConfig(kind="onnx_yolo", model_path=model, score_threshold=conf, nms_iou=iou,
                                             class_thresholds={}, runtime=runtime))
    tracker = ByteTracker(TrackerConfig())
    source = open_source(CameraConfig(id="peer", url=str(clip), detect_fps=min(30, fps + 1), playback="fast"),
                         start_epoch=0.0)
    done, t0, boxes = 0, time.perf_counter(), 0
    try:
        while done < frames:
            frame = source.read(5.0)
            if frame is None:
                if source.finished:
                    break
                continue
            dets = detector.detect(frame.image)
            boxes += len(tracker.update(dets, frame.timestamp))
            done += 1
            if done == warmup:
                t0 = time.perf_counter()
    finally:
        source.stop()
    runtime = getattr(detector.backend, "runtime", "?")
    return {"frames": done - warmup, "seconds": time.perf_counter() - t0, "boxes": boxes, "runtime": runtime}


def run_ultralytics(model: Path, clip: Path, frames: int, warmup: int, conf: float, iou: float,
                    imgsz: list[int]) -> dict:
    from ultralytics import YOLO  # the peer's Python need not have GridWatch's dependencies

    yolo = YOLO(str(model), task="detect")
    done, t0, boxes = 0, time.perf_counter(), 0
    for result in yolo.track(source=str(clip), stream=True, tracker="bytetrack.yaml", conf=conf, iou=iou,
                             imgsz=imgsz, device="cpu", verbose=False, persist=True):
        boxes += len(result.boxes)
        done += 1
        if done == warmup:
            t0 = time.perf_counter()
        if done >= frames:
            break
    return {"frames": done - warmup, "seconds": time.perf_counter() - t0, "boxes": boxes, "runtime": "ultralytics"}


def peer_python(arg: str | None) -> str | None:
    if arg:
        return arg
    if importlib.util.find_spec("ultralytics") is not None:
        return sys.executable
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="yolo11n-untrained-640.onnx", help="ONNX file, or a name in ../shared/models")
    ap.add_argument("--clip", default="traffic_intersection_cctv_1.mp4", help="file, or a name in ../shared/media")
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--conf", type=float, default=0.25)
    ap.add_argument("--iou", type=float, default=0.45)
    ap.add_argument("--runtime", choices=["auto", "onnxruntime", "openvino"], default="auto",
                    help="GridWatch's detector.runtime (auto = the default)")
    ap.add_argument("--peer-python", help="a Python with ultralytics installed (default: this one, if it has it)")
    ap.add_argument("--side", choices=["gridwatch", "ultralytics"], help=argparse.SUPPRESS)  # internal
    ap.add_argument("--imgsz", type=int, nargs=2, help=argparse.SUPPRESS)  # internal
    args = ap.parse_args()
    model = Path(args.model) if Path(args.model).is_file() else MODELS / args.model
    clip = Path(args.clip) if Path(args.clip).is_file() else MEDIA / args.clip
    if args.side == "gridwatch":
        print(json.dumps(run_gridwatch(model, clip, args.frames, args.warmup, args.conf, args.iou, args.runtime)))
        return 0
    if args.side == "ultralytics":
        print(json.dumps(run_ultralytics(model, clip, args.frames, args.warmup, args.conf, args.iou, args.imgsz)))
        return 0
    peer = peer_python(args.peer_python)
    if peer is None:
        print("bench_peer: ultralytics is not installed, skipping the comparison. Install it (optional, AGPL-3.0, "
              "pulls in torch) with `pip install ultralytics`, or point --peer-python at a Python that has it.")
        return 0
    sys.path.insert(0, str(ROOT))
    from edge.detectors.yolo_onnx import onnx_metadata, parse_imgsz

    imgsz = parse_imgsz(onnx_metadata(model).get("imgsz", "640"))
    common = ["--imgsz", str(imgsz[0]), str(imgsz[1]), "--model", str(model), "--clip", str(clip),
              "--frames", str(args.frames), "--warmup", str(args.warmup),
              "--conf", str(args.conf), "--iou", str(args.iou)]
    fps: dict[str, list[float]] = {"gridwatch": [], "ultralytics": []}
    info: dict[str, dict] = {}
    for r in range(args.rounds):
        order = ["gridwatch", "ultralytics"] if r % 2 == 0 else ["ultralytics", "gridwatch"]
        for side in order:
            python = sys.executable if side == "gridwatch" else peer
            extra = ["--runtime", args.runtime] if side == "gridwatch" else []
            out = subprocess.run([python, __file__, "--side", side, *common, *extra], capture_output=True, text=True,
                                 check=False)
            if out.returncode != 0:
                print(out.stderr[-2000:], file=sys.stderr)
                raise SystemExit(f"bench_peer: the {side} side failed")
            res = json.loads(out.stdout.strip().splitlines()[-1])
            fps[side].append(res["frames"] / res["seconds"])
            info[side] = res
            print(f"round {r + 1} {side:<12} {res['frames']} frames in {res['seconds']:.1f} s = "
                  f"{fps[side][-1]:.1f} frames/s  ({res['runtime']}, {res['boxes']} tracked boxes)", flush=True)
    gw, ul = statistics.median(fps["gridwatch"]), statistics.median(fps["ultralytics"])
    print(f"\n{model.name} on {clip.name}, {args.frames} frames, conf {args.conf}, iou {args.iou}, batch 1, "
          f"{args.rounds} interleaved rounds:")
    print(f"  GridWatch ({info['gridwatch']['runtime']}) {gw:.1f} frames/s, ultralytics track() {ul:.1f} frames/s: "
          f"ratio {gw / ul:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
