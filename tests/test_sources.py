"""Frame sources on real footage: files (fast / realtime / loop / auto decode) and their building blocks.

RTSP behaviour against a real gst-rtsp-server is in tests/test_rtsp_sources.py.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import time
from pathlib import Path

import pytest

from edge.config import CameraConfig
from edge.sources import CameraSource, Frame, open_source
from edge.sources.backoff import Backoff
from edge.sources.sampler import RateSampler
from tests.fixtures.media import clip

TRAFFIC = clip("traffic_intersection_cctv_1.mp4")  # 30 fps, 30 s, keyframes every ~4.3 s
TIMELAPSE = clip("parking_lot_cctv_timelapse_1.mp4")  # 20 fps, 8 s, mpeg4


def drain(source: CameraSource, limit_s: float = 30.0, delay_s: float = 0.0) -> list[Frame]:
    """Read a fast-mode file to its end."""
    frames: list[Frame] = []
    deadline = time.monotonic() + limit_s
    while not source.finished and time.monotonic() < deadline:
        frame = source.read(1.0)
        if frame is not None:
            frames.append(frame)
            time.sleep(delay_s)
    assert source.finished, f"file did not finish in {limit_s} s: {source.health}"
    return frames


def keyframe_times(path) -> list[float]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "packet=pts_time,flags",
         "-of", "csv=p=0", str(path)], capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return [float(p) for p, _, f in (ln.partition(",") for ln in out.splitlines()) if "K" in f]


@pytest.mark.parametrize("decoder", ["pyav", "opencv"])
def test_fast_file_is_deterministic_and_samples_on_the_file_clock(decoder):
    cam = CameraConfig(id="traffic", url=str(TRAFFIC), detect_fps=2, playback="fast", decoder=decoder)
    runs = []
    for delay in (0.0, 0.004):  # a slower consumer must not change what it gets
        source = CameraSource(cam, start_epoch=1_700_000_000.0)
        source.start()
        try:
            frames = drain(source, delay_s=delay)
        finally:
            source.stop()
        runs.append(frames)
        health = source.health
        assert health.state == "finished"
        assert health.frames_dropped == 0
        assert health.frames_decoded == 909  # every frame of the clip went through grab()
        # keyframes every 4.3 s cannot serve 2 fps: auto fell back (PyAV to skipping non-reference frames, of
        # which this clip has none)
        assert health.decode == ("nonref" if decoder == "pyav" else "all")
    first, second = ([round(f.pts, 3) for f in run] for run in runs)
    assert first == second
    assert len(first) == 61  # 0.0, 0.5, ..., 30.0 on a 30 s clip
    steps = [b - a for a, b in zip(first, first[1:], strict=False)]
    assert all(abs(s - 0.5) < 0.04 for s in steps), steps
    for i, f in enumerate(runs[0]):
        assert f.index == i
        assert f.timestamp == pytest.approx(1_700_000_000.0 + f.pts)
        assert f.image.shape == (480, 640, 3)
        assert f.camera_id == "traffic"


def test_auto_decode_uses_keyframes_when_they_meet_detect_fps():
    keys = keyframe_times(TRAFFIC)
    cam = CameraConfig(id="sparse", url=str(TRAFFIC), detect_fps=0.2, playback="fast", decode="auto")
    source = open_source(cam, start_epoch=0.0)
    try:
        frames = drain(source)
    finally:
        source.stop()
    health = source.health
    assert health.decode == "keyframes"
    assert health.frames_decoded == len(keys)  # only keyframes were decoded, not 909 frames
    for f in frames:
        assert min(abs(f.pts - k) for k in keys) < 0.05, f"{f.pts} is not a keyframe time"
    assert 5 <= len(frames) <= 7  # 0.2 fps over 30 s
    assert frames[0].image.shape == (480, 640, 3)


PLAZA = clip("crowd_plaza_1.mp4")  # 1280x720, 25 fps, 341 frames, B-frames: 152 I/P frames
CAMPUS = clip("pedestrians_campus_cctv_4.avi")  # 480x360, 10 fps, IBBP: a reference frame every 0.3 s


def test_auto_decode_skips_b_frames_in_the_decoder_when_the_rest_meet_detect_fps():
    source = open_source(CameraConfig(id="plaza", url=str(PLAZA), detect_fps=2, playback="fast"), start_epoch=0.0)
    try:
        frames = drain(source)
    finally:
        source.stop()
    health = source.health
    assert health.decode == "nonref"
    assert health.frames_decoded == 152  # I and P frames only, not 341
    assert 26 <= len(frames) <= 29  # still 2 fps over 13.6 s
    steps = [b.pts - a.pts for a, b in zip(frames, frames[1:], strict=False)]
    assert max(steps) <= 0.5 + 0.12, steps  # each sample is within one reference-frame gap of its due time
    assert frames[0].image.shape == (720, 1280, 3)


def test_auto_decode_goes_back_to_all_frames_when_reference_frames_are_too_sparse():
    # 5 fps asks for a frame every 0.2 s; without B-frames this clip has one every 0.3 s
    source = open_source(CameraConfig(id="campus", url=str(CAMPUS), detect_fps=5, playback="fast"), start_epoch=0.0)
    try:
        frames = drain(source, limit_s=60)
    finally:
        source.stop()
    assert source.health.decode == "all"
    assert source.health.frames_decoded >= 790
    assert 390 <= len(frames) <= 400  # 5 fps over 79.5 s
    assert all(b.pts > a.pts for a, b in zip(frames, frames[1:], strict=False))  # AVI: dts, not reordered pts


def _native_threads() -> list[str]:
    names = []
    for t in os.listdir("/proc/self/task"):
        try:
            names.append(Path(f"/proc/self/task/{t}/comm").read_text().strip())
        except FileNotFoundError:  # the thread ended between listing and reading (another test's reader)
            continue
    return names


@pytest.mark.parametrize("threads", [1, 0])
def test_decoder_threads_are_bounded_per_camera(threads):
    cam = CameraConfig(id="plaza", url=str(PLAZA), detect_fps=1, playback="realtime", decoder_threads=threads)
    before = sum(n.startswith("av:") for n in _native_threads())
    source = open_source(cam)
    try:
        assert source.read(10.0) is not None
        names = _native_threads()
    finally:
        source.stop()
    assert "gw-rd-plaza" in names  # the reader is named after its camera (top -H, per-thread CPU)
    ffmpeg_threads = sum(n.startswith("av:") for n in names) - before
    if threads == 1:
        assert ffmpeg_threads == 0  # decoding runs on the reader thread itself
    else:
        assert ffmpeg_threads >= 2  # FFmpeg's default: a pool per camera


def test_decode_width_scales_in_the_decoder_keeping_the_aspect_ratio():
    cam = CameraConfig(id="plaza", url=str(PLAZA), detect_fps=1, playback="fast", decode_width=640)
    source = open_source(cam, start_epoch=0.0)
    try:
        frame = source.read(10.0)
    finally:
        source.stop()
    assert frame is not None and frame.image.shape == (360, 640, 3)


def test_skip_loop_filter_reaches_the_decoder():
    """decoder_skip_loop_filter turns FFmpeg's deblocking off: the same frame at the same time decodes to
    different pixels (the block edges are no longer smoothed), and it stays a normal frame."""
    import numpy as np

    def third_second_frame(skip: bool) -> np.ndarray:
        cam = CameraConfig(id="plaza", url=str(PLAZA), detect_fps=1, playback="fast", decode="all",
                           decoder_skip_loop_filter=skip)
        source = open_source(cam, start_epoch=0.0)
        try:
            frames = [source.read(10.0) for _ in range(3)]
        finally:
            source.stop()
        assert all(f is not None for f in frames)
        return frames[-1].image

    smooth, blocky = third_second_frame(False), third_second_frame(True)
    assert smooth.shape == blocky.shape
    diff = np.abs(smooth.astype(np.int16) - blocky.astype(np.int16))
    assert diff.mean() > 0.2  # deblocking changes many pixels a little (a P-frame several frames in)
    assert diff.mean() < 10  # ... and it is still the same picture


def test_realtime_file_keeps_pace_with_the_file_clock():
    cam = CameraConfig(id="rt", url=str(TRAFFIC), detect_fps=4, playback="realtime")
    source = open_source(cam)
    try:
        first = source.read(10.0)
        assert first is not None
        t0 = time.monotonic()
        frames = [f for f in (source.read(1.0) for _ in range(8)) if f is not None]
        elapsed = time.monotonic() - t0
    finally:
        source.stop()
    assert len(frames) == 8
    assert frames[-1].pts - first.pts == pytest.approx(elapsed, abs=0.35)
    assert abs(frames[-1].timestamp - time.time()) < 2.0  # wall clock, not the file clock
    assert source.health.frames_dropped == 0


def test_latest_frame_drops_old_frames_for_a_slow_consumer():
    cam = CameraConfig(id="slow", url=str(TRAFFIC), detect_fps=10, playback="realtime")
    source = open_source(cam)
    got: list[Frame] = []
    try:
        assert source.read(10.0) is not None
        got.append(source.read(1.0))
        for _ in range(5):
            time.sleep(0.5)  # inference slower than the stream
            frame = source.read(1.0)
            assert frame is not None
            assert time.monotonic() - frame.captured_monotonic < 0.2  # newest frame, not a queued one
            got.append(frame)
        health = source.health
    finally:
        source.stop()
    assert health.frames_dropped >= 15  # ~5 frames sampled per 0.5 s, 1 delivered
    # nothing is queued: every sampled frame was delivered or dropped, at most one waits in the slot
    assert health.frames_sampled - health.frames_dropped - (len(got) + 1) in (0, 1)
    assert [f.index for f in got] == sorted(f.index for f in got)


def test_looping_file_keeps_a_monotonic_clock():
    cam = CameraConfig(id="loop", url=str(TIMELAPSE), detect_fps=2, playback="fast", loop=True)
    source = open_source(cam, start_epoch=100.0)
    try:
        frames = [source.read(5.0) for _ in range(40)]  # 8 s clip at 2 fps: 2.5 passes
    finally:
        source.stop()
    assert all(f is not None for f in frames)
    pts = [f.pts for f in frames]
    assert all(b > a for a, b in zip(pts, pts[1:], strict=False)), pts
    assert pts[-1] > 16.0
    assert not source.finished
    assert source.health.reconnects == 0  # looping is not a reconnect


def test_missing_file_and_disabled_camera_report_health_without_raising(tmp_path):
    missing = CameraSource(CameraConfig(id="gone", url=str(tmp_path / "nope.mp4"), reconnect_min_s=5))
    disabled = CameraSource(CameraConfig(id="off", url=str(TRAFFIC), enabled=False))
    missing.start()
    disabled.start()
    try:
        deadline = time.monotonic() + 5
        while missing.health.state != "offline" and time.monotonic() < deadline:
            time.sleep(0.05)
        h = missing.health
        assert h.state == "offline"
        assert "file not found" in h.last_error and "nope.mp4" in h.last_error
        assert disabled.health.state == "disabled"
        assert disabled.read(0.1) is None
        assert disabled.health.frames_decoded == 0
        json.dumps(h.to_dict())
    finally:
        missing.stop()
        disabled.stop()


def test_backoff_grows_exponentially_with_jitter_and_caps():
    b = Backoff(1.0, 8.0, jitter=0.5, rng=random.Random(7))
    delays = [b.next_delay() for _ in range(6)]
    ceilings = [1, 2, 4, 8, 8, 8]
    for d, c in zip(delays, ceilings, strict=True):
        assert c * 0.5 <= d <= c
    assert len({round(d, 6) for d in delays[3:]}) == 3  # jitter: capped delays still differ
    b.reset()
    assert b.next_delay() <= 1.0
    with pytest.raises(ValueError, match="min_s"):
        Backoff(5, 1)


def test_sampler_holds_the_rate_without_drift_or_bursts():
    s = RateSampler(2.0)
    picked = [i / 25 for i in range(25 * 60) if s.due(i / 25)]  # 60 s of a 25 fps stream
    assert len(picked) == 120
    s = RateSampler(1.0)
    assert s.due(0.0) and s.due(1.0)
    assert s.due(50.0)  # after a gap: one frame, then back to the period
    assert not s.due(50.5) and s.due(51.0)


def test_memory_stays_flat_over_many_loops():
    """1500 frames (≈9 passes of an 8 s clip, one reopen per pass): RSS must not grow with frames read."""
    import psutil

    proc = psutil.Process()
    cam = CameraConfig(id="soak", url=str(TIMELAPSE), detect_fps=20, playback="fast", loop=True)
    source = open_source(cam, start_epoch=0.0)
    try:
        for _ in range(300):
            assert source.read(5.0) is not None
        warm = proc.memory_info().rss
        for _ in range(1200):
            assert source.read(5.0) is not None
        grown = proc.memory_info().rss - warm
    finally:
        source.stop()
    assert grown < 30 * 2**20, f"RSS grew by {grown / 2**20:.1f} MiB over 1200 frames of 0.9 MiB each"


def test_http_mjpeg_stream():
    """ffmpeg as a real MJPEG-over-HTTP camera (multipart/x-mixed-replace), paced in real time."""
    from tests.fixtures.rtsp import free_port

    port = free_port()
    server = subprocess.Popen(
        ["ffmpeg", "-nostdin", "-v", "error", "-re", "-i", str(clip("pedestrians_campus_cctv_4.avi")), "-an",
         "-c:v", "mjpeg", "-q:v", "5", "-f", "mpjpeg", "-listen", "1", f"http://127.0.0.1:{port}/cam.mjpg"],
    )  # fmt: skip
    cam = CameraConfig(id="mjpeg", url=f"http://127.0.0.1:{port}/cam.mjpg", detect_fps=2, reconnect_min_s=0.2)
    source = open_source(cam)
    try:
        assert source.read(10.0) is not None, source.health
        t0 = time.monotonic()
        frames = [f for f in (source.read(2.0) for _ in range(6)) if f is not None]
        elapsed = time.monotonic() - t0
        health = source.health
    finally:
        source.stop()
        server.kill()
        server.wait()
    assert len(frames) == 6
    assert 2.5 <= elapsed <= 3.6  # 6 frames at 2 fps
    assert frames[0].image.shape == (360, 480, 3)
    assert health.state == "online" and health.decode == "all"
    assert 7 <= health.input_fps <= 13  # the clip is 10 fps


def test_reader_threads_run_at_the_configured_nice_value():
    """Decoders must yield the CPU to the shared detector (see CameraSettings.reader_nice)."""

    def nice_of(source: CameraSource) -> int:
        stat = Path(f"/proc/self/task/{source._thread.native_id}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[16])  # field 19 of proc(5), counted after the comm field

    sources = [CameraSource(CameraConfig(id=f"n{n}", url=str(TRAFFIC), playback="realtime", reader_nice=n))
               for n in (0, 10)]
    for s in sources:
        s.start()
    try:
        assert all(s.read(10) is not None for s in sources)
        base = os.getpriority(os.PRIO_PROCESS, 0)  # CI may itself run niced
        assert [nice_of(s) for s in sources] == [base, max(base, 10)]
    finally:
        for s in sources:
            s.stop()


def test_a_camera_that_hangs_while_opening_does_not_delay_other_cameras():
    """An RTSP server that accepts the connection and never answers holds its camera in open() until
    open_timeout_s; another camera must open meanwhile. (OpenCV opens every capture under one process-wide
    lock, so the RTSP preflight check must find the silent server before OpenCV is called.)"""
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    hanging = CameraSource(CameraConfig(id="silent", url=f"rtsp://127.0.0.1:{silent.getsockname()[1]}/x",
                                        open_timeout_s=8, read_timeout_s=8))
    healthy = CameraSource(CameraConfig(id="ok", url=str(TRAFFIC), playback="realtime"))
    hanging.start()
    try:
        time.sleep(0.5)  # the hanging camera is now inside open()
        assert hanging.health.state == "connecting"
        t0 = time.monotonic()
        healthy.start()
        assert healthy.read(5) is not None
        assert time.monotonic() - t0 < 3.0
        assert hanging.health.state == "connecting"  # still waiting for the silent server
    finally:
        healthy.stop()
        hanging.stop()
        silent.close()
