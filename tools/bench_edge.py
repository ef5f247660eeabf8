"""Edge pipeline benchmark: N cameras for T seconds, per-stage timings, throughput vs detector-only.

    .venv/bin/python tools/bench_edge.py --cameras 16 --seconds 60            # sample clips as live files
    .venv/bin/python tools/bench_edge.py --cameras 4 --seconds 60 --source rtsp   # the clips over a real RTSP server
    .venv/bin/python tools/bench_edge.py --cameras 1 --seconds 60 --mqtt      # + rules/incidents → Mosquitto, latency
    .venv/bin/python tools/bench_edge.py --cameras 16 --detect-fps 1 --tiling --source rtsp   # IP-camera-like
    .venv/bin/python tools/bench_edge.py --cameras 16 --detector yolo --model yolo26n-untrained-320.onnx
    .venv/bin/python tools/bench_edge.py --capacity --detector ssd          # cameras per box at 1 fps
    .venv/bin/python tools/bench_edge.py --cameras 16 --camera '{motion_gate: {enabled: true}}'  # any camera keys

``decode`` CPU counts every thread that decodes: the readers (named gw-rd-<camera>) and FFmpeg's own decoder threads
(named av:<codec>:<n> by FFmpeg), per-thread CPU from /proc/self/task, plus threads that ended during the run (the
process total minus the live threads: FFmpeg's decoder threads end with their capture whenever a looping file is
reopened) and ffmpeg child processes. ``--capacity``
finds the largest number of cameras for which every camera gets at least 95 % of the detect fps it asks for
(1 fps unless --detect-fps is given), in realtime playback.

Cameras replay the sample clips in real time (looping), like live cameras. Prints, per stage, median and
p95 ms; analysed frames/s in total; CPU% and peak RSS (with the RSS trend to show memory stays flat);
then, in the same run, detector-only throughput on frames from the same clips with the same batch sizes,
and the ratio pipeline / detector-only. With --mqtt it starts its own Mosquitto on a free port and
reports end-to-end latency from frame capture to broker acknowledgement (PUBACK).
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge.config import EdgeConfig, TilingConfig, parse_config  # noqa: E402
from edge.detectors import build_detector  # noqa: E402
from edge.sources.camera import READER_THREAD_PREFIX  # noqa: E402
from edge.worker import EdgeWorker  # noqa: E402

MEDIA = ROOT.parent / "shared" / "media"
MODELS = ROOT.parent / "shared" / "models"
CLIPS = [
    "traffic_intersection_cctv_1.mp4",
    "street_parking_residential_1.mp4",
    "crowd_plaza_1.mp4",
    "pedestrians_campus_cctv_4.avi",
]
# Zones with short dwell times so the benchmark produces a steady stream of incidents for latency figures.
BENCH_ZONES = {
    "traffic_intersection_cctv_1.mp4": [
        {
            "name": "kerb",
            "type": "no_parking",
            "points": [[0, 0.5], [0.3, 0.5], [0.3, 0.9], [0, 0.9]],
            "dwell_s": 3,
            "grace_s": 2,
        },
        {
            "name": "top-row",
            "type": "no_parking",
            "points": [[0.6, 0], [1, 0], [1, 0.2], [0.6, 0.2]],
            "dwell_s": 3,
            "grace_s": 2,
        },
    ],
    "street_parking_residential_1.mp4": [
        {
            "name": "near-kerb",
            "type": "no_parking",
            "points": [[0, 0.5], [1, 0.5], [1, 1], [0, 1]],
            "dwell_s": 3,
            "grace_s": 2,
        },
    ],
    "crowd_plaza_1.mp4": [
        {
            "name": "floor",
            "type": "crowd",
            "points": [[0, 0], [1, 0], [1, 1], [0, 1]],
            "area_m2": 400,
            "levels": {"elevated": 0.01, "high": 0.02, "critical": 0.2},
            "cooldown_s": 5,
            "smoothing_s": 0,
        },
    ],
    "pedestrians_campus_cctv_4.avi": [
        {
            "name": "path",
            "type": "crowd",
            "points": [[0, 0.3], [1, 0.3], [1, 1], [0, 1]],
            "area_m2": 100,
            "levels": {"elevated": 0.02, "high": 0.05, "critical": 0.5},
            "cooldown_s": 5,
            "smoothing_s": 0,
        },
    ],
}


def build_config(
    n: int,
    urls: list[str],
    detect_fps: float,
    workdir: Path,
    mqtt_port: int | None,
    tiling: bool = False,
    decode: str = "auto",
    detector: dict | None = None,
    camera_extra: dict | None = None,
    playback: str = "realtime",
) -> EdgeConfig:
    cams = []
    for i in range(n):
        clip = CLIPS[i % len(CLIPS)]
        cams.append(
            {
                "id": f"bench-{i:02d}",
                "url": urls[i % len(urls)],
                "detect_fps": detect_fps,
                "playback": playback,
                "loop": True,
                "zones": BENCH_ZONES[clip],
                "decode": decode,
                **({"tiling": {"enabled": True}} if tiling else {}),
                **(camera_extra or {}),
            }
        )
    doc = {
        "detector": detector or {},
        "edge_id": "edge-bench",
        "outbox": {"path": str(workdir / "outbox.sqlite")},
        "snapshots": {"dir": str(workdir / "snapshots")},
        "health": {"interval_s": 3600},
        "cameras": cams,
    }
    if mqtt_port:
        doc["mqtt"] = {"host": "127.0.0.1", "port": mqtt_port, "heartbeat_s": 10}
    return parse_config(doc, source="bench")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_mosquitto(workdir: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    conf = workdir / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("mosquitto did not start")


def start_rtsp(workdir: Path) -> tuple[list, list[str]]:
    """One real gst-rtsp-server per clip (the same server and re-encode the tests use)."""
    from tests.fixtures.rtsp import RtspServer, ensure_rtsp_tools, free_port, make_rtsp_media

    ensure_rtsp_tools()
    servers, urls = [], []
    for i, clip in enumerate(CLIPS):
        server = RtspServer(make_rtsp_media(MEDIA / clip, workdir), free_port(), f"cam{i}")
        server.start()
        servers.append(server)
        urls.append(server.url)
    return servers, urls


def sample_frames(per_clip: int = 8, clips: list[str] | None = None) -> list[np.ndarray]:
    """Frames spread evenly over each clip (by frame index), for detector-only timings."""
    frames = []
    for clip in clips or CLIPS:
        cap = cv2.VideoCapture(str(MEDIA / clip))
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or 200
        for k in range(per_clip):
            cap.set(cv2.CAP_PROP_POS_FRAMES, int(k * total / per_clip))
            ok, img = cap.read()
            if ok:
                frames.append(img)
        cap.release()
    return frames


def detector_only(
    detector, frames: list[np.ndarray], batch_sizes: list[int], seconds: float, tiling: TilingConfig | None = None
) -> float:
    """Frames/s of detect_batch alone on real frames, with the batch sizes (and tiling) the pipeline used."""
    done, i, start = 0, 0, time.perf_counter()
    sizes = batch_sizes or [1]
    while time.perf_counter() - start < seconds:
        b = sizes[i % len(sizes)]
        batch = [frames[(done + k) % len(frames)] for k in range(b)]
        detector.detect_batch(batch, [tiling] * b)
        done += b
        i += 1
    return done / (time.perf_counter() - start)


def thread_cpu() -> dict[int, tuple[str, float]]:
    """{tid: (thread name, user+system CPU seconds)} for every thread of this process, from /proc."""
    out = {}
    tick = os.sysconf("SC_CLK_TCK")
    for task in Path("/proc/self/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        out[int(task.name)] = (name, (int(fields[11]) + int(fields[12])) / tick)  # utime, stime
    return out


def own_cpu() -> float:
    """User+system CPU seconds of this process (every thread, ended ones included), not its children."""
    t = os.times()
    return t.user + t.system


def children_cpu(proc: psutil.Process) -> float:
    total = 0.0
    for child in proc.children(recursive=True):
        try:
            t = child.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def cpu_by_role(before: dict, after: dict) -> dict[str, float]:
    """CPU seconds per role between two thread_cpu() snapshots: readers (gw-rd-*), FFmpeg's own decoder threads
    (FFmpeg names them av:<codec>:<n>; only the readers' decoders use FFmpeg in this process), the rest."""
    roles = {"readers": 0.0, "ffmpeg_threads": 0.0, "other": 0.0}
    for tid, (name, cpu) in after.items():
        used = max(0.0, cpu - before.get(tid, (name, 0.0))[1])
        role = (
            "readers"
            if name.startswith(READER_THREAD_PREFIX)
            else "ffmpeg_threads"
            if name.startswith("av:")
            else "other"
        )
        roles[role] += used
    roles["decode"] = roles["readers"] + roles["ffmpeg_threads"]
    return roles


def memory_suspects(worker: EdgeWorker) -> str:
    """Sizes of what could grow in a long run: Python objects, tracks, the evidence queue, stage windows."""
    tracks = sum(len(p.tracker.tracks) for p in worker.pipelines.values())
    stages = sum(len(v) for v in worker.stats._samples.values())
    return (
        f"gc objects {len(gc.get_objects())}, tracks {tracks}, evidence queue {worker._evidence.qsize()}, "
        f"stage samples {stages}, threads {threading.active_count()}"
    )


def rss_thirds(rss: list[float]) -> dict:
    """Mean RSS of each third of the run and the soak criterion: last third within 5 % of the middle third."""
    if len(rss) < 3:
        return {}
    thirds = [float(part.mean()) for part in np.array_split(np.array(rss), 3)]
    growth = thirds[2] / thirds[1] - 1
    return {
        "rss_thirds_mb": [round(t, 1) for t in thirds],
        "rss_last_vs_middle_third": round(growth, 4),
        "rss_flat": abs(growth) <= 0.05,
    }


def detector_section(args: argparse.Namespace) -> dict:
    if args.detector == "ssd":
        return {}
    model = Path(args.model)
    if not model.is_file():
        model = MODELS / args.model
    section = {"kind": "onnx_yolo", "model_path": str(model)}
    if args.runtime != "auto":
        section["runtime"] = args.runtime
    return section


def run_bench(
    args: argparse.Namespace, n: int, urls: list[str], workdir: Path, mqtt_port: int | None, compare: bool = True
) -> dict:
    """One run of ``n`` cameras: warm-up, then ``args.seconds`` measured; detector-only afterwards if ``compare``."""
    cfg = build_config(
        n,
        urls,
        args.detect_fps,
        workdir,
        mqtt_port,
        args.tiling,
        args.decode,
        detector_section(args),
        args.camera,
        args.playback,
    )
    if args.max_batch:
        cfg.detector.max_batch = args.max_batch
    detector = build_detector(cfg.detector)
    publisher, ack_latency = None, []
    pending_capture: dict[str, float] = {}
    if mqtt_port:
        from edge.mqtt import EdgePublisher

        def on_ack(entry: dict) -> None:
            captured = pending_capture.pop(entry.get("event_id", ""), None)
            if captured is not None:
                ack_latency.append((time.monotonic() - captured) * 1000)

        publisher = EdgePublisher(cfg, on_ack=on_ack)
    worker = EdgeWorker(cfg, publisher=publisher, detector=detector)
    worker.on_event_queued = lambda event_id, captured: pending_capture.__setitem__(event_id, captured)
    batch_sizes: list[int] = []
    orig_process = worker._process

    def process(batch):  # record batch sizes for the detector-only comparison
        batch_sizes.append(len(batch))
        orig_process(batch)

    worker._process = process
    proc = psutil.Process()
    worker.start()
    runner = threading.Thread(target=worker.run, daemon=True)
    runner.start()
    time.sleep(args.warmup)
    worker.stats.reset()
    frames0 = worker.counters["frames_analyzed"]
    per_camera0 = {cid: p.frames_analyzed for cid, p in worker.pipelines.items()}
    ack_latency.clear()
    batch_sizes.clear()
    proc.cpu_percent(None)
    psutil.cpu_percent(None)
    threads0, children0, own0 = thread_cpu(), children_cpu(proc), own_cpu()
    rss = []
    t0 = time.perf_counter()
    next_report = t0 + args.rss_every if args.rss_every else None
    while time.perf_counter() - t0 < args.seconds:
        time.sleep(1.0)
        rss.append(proc.memory_info().rss / 2**20)
        if next_report and time.perf_counter() >= next_report:
            next_report += args.rss_every
            print(
                f"  [{time.perf_counter() - t0:6.0f} s] RSS {rss[-1]:.1f} MiB, analysed "
                f"{worker.counters['frames_analyzed'] - frames0}, {memory_suspects(worker)}",
                file=sys.stderr,
                flush=True,
            )
    elapsed = time.perf_counter() - t0
    cpu = proc.cpu_percent(None)
    machine_cpu = psutil.cpu_percent(None) * psutil.cpu_count()  # incl. ffmpeg children and RTSP servers
    roles = cpu_by_role(threads0, thread_cpu())
    # threads that ended during the run (FFmpeg's decoder threads die with their capture when a looping file or a
    # reconnecting stream is reopened) are missing from the last snapshot: the process total minus the live threads
    roles["exited_threads"] = max(0.0, own_cpu() - own0 - roles["readers"] - roles["ffmpeg_threads"] - roles["other"])
    roles["children"] = max(0.0, children_cpu(proc) - children0)  # ffmpeg keyframe pipes, if any
    roles["decode"] += roles["exited_threads"] + roles["children"]
    analysed = worker.counters["frames_analyzed"] - frames0
    shares = {
        cid: round((p.frames_analyzed - per_camera0.get(cid, 0)) / elapsed / args.detect_fps, 3)
        for cid, p in worker.pipelines.items()
    }
    per_camera = sorted(shares.values())
    stages = worker.stats.summary()
    health = worker.health()
    counters = dict(worker.counters)
    worker.stop()
    runner.join(timeout=10)
    worker.close()

    pipeline_fps = analysed / elapsed
    det_fps = None
    if compare:
        det_fps = detector_only(
            detector,
            sample_frames(),
            batch_sizes,
            min(args.seconds, 20),
            TilingConfig(enabled=True) if args.tiling else None,
        )
    decoded = sum(h.get("frames_decoded", 0) for h in health)
    dropped = sum(h.get("frames_dropped", 0) for h in health)
    result = {
        "cameras": n,
        "seconds": round(elapsed, 1),
        "source": args.source,
        "playback": args.playback,
        "detector": detector.name,
        "runtime": getattr(detector.backend, "runtime", "opencv-dnn"),
        "detect_fps_per_camera": args.detect_fps,
        "stages": stages,
        "analysed_fps": round(pipeline_fps, 2),
        "detector_only_fps": round(det_fps, 2) if det_fps else None,
        "demand_fps": n * args.detect_fps,
        "ratio": round(pipeline_fps / det_fps, 3) if det_fps else None,
        # when the cameras ask for less than the detector can do, compare with what they asked for
        "ratio_to_achievable": round(pipeline_fps / min(det_fps, n * args.detect_fps), 3) if det_fps else None,
        "per_camera_share_of_asked": {
            "min": round(per_camera[0], 3),
            "median": round(per_camera[len(per_camera) // 2], 3),
            "each": shares,
        },
        "mean_batch": round(statistics.mean(batch_sizes), 2) if batch_sizes else 0,
        "cpu_percent": round(cpu, 1),
        # the figure load moves least: what one camera costs at its asked rate (valid while every camera gets it)
        "cpu_percent_per_camera": round(cpu / n, 2),
        "machine_cpu_percent": round(machine_cpu, 1),
        "decode_cpu_percent": round(roles["decode"] / elapsed * 100, 1),
        "decode_cpu_split_percent": {
            k: round(roles[k] / elapsed * 100, 1) for k in ("readers", "ffmpeg_threads", "exited_threads", "children")
        },
        "decode_cpu_ms_per_analysed_frame": round(roles["decode"] * 1000 / analysed, 1) if analysed else None,
        "other_cpu_percent": round(roles["other"] / elapsed * 100, 1),
        "peak_rss_mb": round(max(rss), 1),
        "rss_first_10s_mb": round(statistics.mean(rss[:10]), 1),
        "rss_last_10s_mb": round(statistics.mean(rss[-10:]), 1),
        # mean RSS of each tenth of the run: a leak climbs steadily, allocator warm-up levels off
        "rss_trend_mb": [round(float(part.mean()), 1) for part in np.array_split(np.array(rss), 10) if len(part)],
        **rss_thirds(rss),
        "rss_samples_mb": [round(v, 1) for v in rss],  # one a second
        "decode_modes": dict(Counter(h.get("decode", "all") for h in health)),
        "frames_decoded": decoded,
        "frames_dropped_latest_only": dropped,
        "incidents": {k: v for k, v in counters.items() if k.startswith("incident_")},
        "detector_skipped": counters.get("detector_skipped", 0),
    }
    if ack_latency:
        result["capture_to_puback_ms"] = {
            "count": len(ack_latency),
            "median": round(float(np.median(ack_latency)), 1),
            "p95": round(float(np.percentile(ack_latency, 95)), 1),
        }
    return result


def capacity(args: argparse.Namespace, urls: list[str], workdir: Path) -> dict:
    """Largest N for which every camera gets >= 95 % of its asked detect fps (realtime playback)."""

    def ok(n: int) -> bool:
        r = run_bench(args, n, urls, workdir, None, compare=False)
        share = r["per_camera_share_of_asked"]
        good = share["min"] >= 0.95
        print(
            f"  {n:>3} cameras: per-camera share of asked fps min {share['min']:.2f} median {share['median']:.2f}, "
            f"analysed {r['analysed_fps']} frames/s, decode {r['decode_cpu_percent']}% of a core, "
            f"CPU {r['cpu_percent']}% -> {'ok' if good else 'short'}",
            flush=True,
        )
        tried[n] = r
        return good

    tried: dict[int, dict] = {}
    good, bad = 0, None
    n = args.capacity_start
    while bad is None and n <= args.capacity_max:
        if ok(n):
            good, n = n, n * 2
        else:
            bad = n
    if bad is None:
        return {"cameras_per_box": good, "note": f"not saturated at {good}", "runs": tried}
    while bad - good > max(1, good // 8):  # bisect to within an eighth
        mid = (good + bad) // 2
        if ok(mid):
            good = mid
        else:
            bad = mid
    return {"cameras_per_box": good, "first_short": bad, "runs": tried}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cameras", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument(
        "--detect-fps",
        type=float,
        default=None,
        help="per camera; default 5 (more than 2 cores can detect, so the ratio is meaningful), 1 with --capacity",
    )
    ap.add_argument("--source", choices=["file", "rtsp"], default="file")
    ap.add_argument(
        "--playback",
        choices=["realtime", "fast"],
        default="realtime",
        help="files: realtime (like live cameras) or fast (as fast as decoding allows)",
    )
    ap.add_argument("--detector", choices=["ssd", "yolo"], default="ssd")
    ap.add_argument(
        "--model",
        default="yolo26n-untrained-320.onnx",
        help="--detector yolo: an ONNX file, or a name in ../shared/models",
    )
    ap.add_argument("--runtime", choices=["auto", "onnxruntime", "openvino"], default="auto")
    ap.add_argument(
        "--camera",
        type=yaml.safe_load,
        default=None,
        help="YAML mapping merged into every camera, e.g. '{decoder_threads: 1}'",
    )
    ap.add_argument("--mqtt", action="store_true", help="publish incidents to a local Mosquitto; report latency")
    ap.add_argument("--tiling", action="store_true", help="2x2 tiling on every camera (about 5x the inference)")
    ap.add_argument(
        "--decode",
        choices=["auto", "all", "keyframes"],
        default="auto",
        help="camera decode mode; auto uses keyframes-only where the stream's GOP allows it",
    )
    ap.add_argument("--max-batch", type=int, help="detector.max_batch (images per forward pass); default: config's")
    ap.add_argument("--capacity", action="store_true", help="search the cameras-per-box figure (see above)")
    ap.add_argument("--capacity-start", type=int, default=4)
    ap.add_argument("--capacity-max", type=int, default=128)
    ap.add_argument("--warmup", type=float, default=5.0)
    ap.add_argument(
        "--rss-every",
        type=float,
        default=0,
        help="print RSS to stderr every this many seconds while measuring (long soaks)",
    )
    ap.add_argument("--no-compare", action="store_true", help="skip the detector-only phase (no ratio)")
    ap.add_argument("--json", type=Path, help="also write the figures as JSON")
    ap.add_argument("--log", default="WARNING", help="log level for the worker (INFO shows decode decisions)")
    args = ap.parse_args()
    if args.detect_fps is None:
        args.detect_fps = 1.0 if args.capacity else 5.0
    logging.basicConfig(level=args.log.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    workdir = Path(tempfile.mkdtemp(prefix="gw-bench-"))
    servers, broker = [], None
    try:
        urls = [str(MEDIA / c) for c in CLIPS]
        if args.source == "rtsp":
            servers, urls = start_rtsp(workdir)
        if args.capacity:
            result = capacity(args, urls, workdir)
            print(
                f"\n== cameras per box ({args.detector}{' ' + args.model if args.detector == 'yolo' else ''}, "
                f"{args.detect_fps:g} fps asked, {args.seconds:g} s per try, source={args.source}): "
                f"{result['cameras_per_box']} "
                f"({result.get('note') or 'first short at ' + str(result['first_short'])})"
            )
        else:
            mqtt_port = None
            if args.mqtt:
                broker, mqtt_port = start_mosquitto(workdir)
            result = run_bench(args, args.cameras, urls, workdir, mqtt_port, compare=not args.no_compare)
            print_report(result)
        if args.json:
            args.json.write_text(json.dumps(result, indent=2))
        return 0
    finally:
        for s in servers:
            s.stop()
        if broker:
            broker.terminate()
        shutil.rmtree(workdir, ignore_errors=True)


def print_report(r: dict) -> None:
    print(
        f"\n== GridWatch edge benchmark: {r['cameras']} camera(s), {r['seconds']} s, source={r['source']} "
        f"({r['playback']}), {r['detector']} on {r['runtime']}, detect {r['detect_fps_per_camera']} fps/camera =="
    )
    print(f"{'stage':<22}{'count':>8}{'median ms':>12}{'p95 ms':>10}")
    for stage, s in sorted(r["stages"].items()):
        print(f"{stage:<22}{s['count']:>8}{s['median_ms']:>12.2f}{s['p95_ms']:>10.2f}")
    print(f"analysed frames/s (all cameras): {r['analysed_fps']}  (mean batch {r['mean_batch']})")
    print(f"detector-only frames/s, same frames and batch sizes: {r['detector_only_fps']}")
    print(
        f"ratio pipeline / detector-only: {r['ratio']}   (cameras ask for {r['demand_fps']:g} frames/s; "
        f"pipeline / min(asked, detector-only) = {r['ratio_to_achievable']})"
    )
    share = r["per_camera_share_of_asked"]
    print(
        f"per camera, share of the asked fps: min {share['min']}, median {share['median']}; "
        f"detector skipped (motion gate) {r['detector_skipped']} frames"
    )
    print(
        f"decode CPU (readers + FFmpeg decoder threads + ffmpeg children): {r['decode_cpu_percent']}% of a core "
        f"({r['decode_cpu_split_percent']}), "
        f"{r['decode_cpu_ms_per_analysed_frame']} ms per analysed frame; rest of the process "
        f"{r['other_cpu_percent']}%"
    )
    print(
        f"CPU: {r['cpu_percent']}% this process ({r['cpu_percent_per_camera']}% per camera), "
        f"{r['machine_cpu_percent']}% whole machine  "
        f"peak RSS: {r['peak_rss_mb']} MiB  "
        f"(RSS first 10 s {r['rss_first_10s_mb']} MiB → last 10 s {r['rss_last_10s_mb']} MiB)"
    )
    print(f"RSS trend (MiB, mean of each tenth of the run): {r['rss_trend_mb']}")
    if "rss_thirds_mb" in r:
        print(
            f"RSS by thirds (MiB): {r['rss_thirds_mb']}; last vs middle third "
            f"{r['rss_last_vs_middle_third'] * 100:+.1f} % -> {'flat' if r['rss_flat'] else 'NOT flat'} (limit 5 %)"
        )
    print(
        f"frames decoded {r['frames_decoded']}, dropped by latest-frame {r['frames_dropped_latest_only']}; "
        f"decode modes {r['decode_modes']}"
    )
    print(f"incident events: {r['incidents']}")
    if "capture_to_puback_ms" in r:
        lat = r["capture_to_puback_ms"]
        print(f"capture → broker PUBACK: median {lat['median']} ms, p95 {lat['p95']} ms over {lat['count']} events")


if __name__ == "__main__":
    raise SystemExit(main())
