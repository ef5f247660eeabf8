"""How much decoding work does 1 fps analysis of a 25-30 fps stream really need?

Compares, per clip, CPU time and wall time to get frames at ``--fps`` (default 1) from the whole clip:

  read_all        cap.read() on every frame (decode + BGR conversion of every frame): the naive loop
  grab_retrieve   cap.grab() every frame, cap.retrieve() only sampled ones (decode=all in edge.sources)
  keyframes       ffmpeg -skip_frame nokey piping only keyframes (decode=keyframes, decoder=opencv)
  pyav_all        PyAV in-process, one decoder thread, every frame decoded (decoder=pyav, decode=all)
  pyav_nonref     PyAV, the decoder skips non-reference frames (B-frames) (decode=nonref; auto when they allow)
  pyav_keyframes  PyAV, the decoder skips everything but keyframes (decode=keyframes, decoder=pyav)
  pyav_all_t0     PyAV with FFmpeg's default thread count (what OpenCV does too)

CPU is user+system of this process (all its threads, FFmpeg's included) and its children (ffmpeg), so all are
comparable. Keyframe-only
decoding only meets the target rate when keyframes come at least that often; the sample clips have sparse
keyframes, so each is also re-encoded with a 1 s GOP (-g <fps>, like a typical IP camera) to show the
case 'auto' can use.

    .venv/bin/python tools/bench_decode.py [--fps 1] [--clips crowd_plaza_1.mp4 traffic_intersection_cctv_1.mp4]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from edge.config import CameraSettings  # noqa: E402
from edge.sources.capture import (  # noqa: E402
    FfmpegKeyframeCapture,
    OpenCvCapture,
    PyAvCapture,
    probe_keyframe_interval,
)
from edge.sources.sampler import RateSampler  # noqa: E402

MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media"


def cpu_s() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def measure(fn: Callable[[], tuple[int, int]]) -> tuple[float, float, int, int]:
    c0, w0 = cpu_s(), time.perf_counter()
    decoded, sampled = fn()
    return cpu_s() - c0, time.perf_counter() - w0, decoded, sampled


def read_all(path: Path, fps: float) -> tuple[int, int]:
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    sampler, n, k = RateSampler(fps), 0, 0
    while True:
        ok, _ = cap.read()
        if not ok:
            break
        n += 1
        k += sampler.due(cap.get(cv2.CAP_PROP_POS_MSEC) / 1000)
    cap.release()
    return n, k


def run_capture(cap: OpenCvCapture | FfmpegKeyframeCapture | PyAvCapture, fps: float) -> tuple[int, int]:
    cap.open()
    sampler, n, k = RateSampler(fps), 0, 0
    while (pts := cap.grab()) is not None:
        n += 1
        if sampler.due(pts):
            k += cap.retrieve() is not None
    cap.close()
    return n, k


def with_gop(path: Path, gop: int, out_dir: Path) -> Path:
    out = out_dir / f"{path.stem}.gop{gop}.mkv"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(path), "-an", "-c:v", "libx264",
                    "-bf", "0", "-g", str(gop), "-preset", "veryfast", str(out)], check=True)  # fmt: skip
    return out


def bench(path: Path, fps: float, repeat: int) -> None:
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    frames, rate = cap.get(cv2.CAP_PROP_FRAME_COUNT), cap.get(cv2.CAP_PROP_FPS)
    cap.release()
    duration = frames / rate if rate else float("nan")
    gap = probe_keyframe_interval(str(path), window_s=3600)
    print(f"\n{path.name}: {w}x{h}, {rate:.2f} fps, {duration:.1f} s, largest keyframe gap {gap:.2f} s")
    print(f"  {'method':<14} {'decoded':>8} {'sampled':>8} {'CPU ms/s video':>15} {'wall x realtime':>16}")
    settings = CameraSettings()
    methods: dict[str, Callable[[], tuple[int, int]]] = {
        "read_all": lambda: read_all(path, fps),
        "grab_retrieve": lambda: run_capture(OpenCvCapture(str(path), settings), fps),
        "keyframes": lambda: run_capture(FfmpegKeyframeCapture(str(path), settings), fps),
        "pyav_all": lambda: run_capture(PyAvCapture(str(path), settings, "all"), fps),
        "pyav_nonref": lambda: run_capture(PyAvCapture(str(path), settings, "nonref"), fps),
        "pyav_keyframes": lambda: run_capture(PyAvCapture(str(path), settings, "keyframes"), fps),
        "pyav_all_t0": lambda: run_capture(PyAvCapture(str(path), CameraSettings(decoder_threads=0), "all"), fps),
    }
    base = None
    for name, fn in methods.items():
        best = min((measure(fn) for _ in range(repeat)), key=lambda r: r[0])
        cpu, wall, decoded, sampled = best
        per_s = cpu / duration * 1000
        base = base or per_s
        note = "" if "keyframes" not in name or gap is None or gap <= 1 / fps + 0.05 else "  (misses the target rate)"
        share = f"({per_s / base:>4.0%})"
        print(f"  {name:<14} {decoded:>8} {sampled:>8} {per_s:>10.1f} {share} {duration / wall:>12.0f}x{note}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--fps", type=float, default=1.0, help="analysis rate (detect_fps)")
    ap.add_argument("--clips", nargs="*", default=["crowd_plaza_1.mp4", "traffic_intersection_cctv_1.mp4"])
    ap.add_argument("--repeat", type=int, default=3, help="runs per method; the lowest CPU time is reported")
    args = ap.parse_args()
    print(f"cv2 {cv2.__version__}, {os.cpu_count()} CPUs, target {args.fps:g} fps")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.clips:
            clip = MEDIA / name
            bench(clip, args.fps, args.repeat)
            cap = cv2.VideoCapture(str(clip), cv2.CAP_FFMPEG)
            gop = max(1, round(cap.get(cv2.CAP_PROP_FPS) / args.fps))
            cap.release()
            bench(with_gop(clip, gop, Path(tmp)), args.fps, args.repeat)


if __name__ == "__main__":
    main()
