"""CameraSource against a real RTSP server (gst-rtsp-server) streaming real footage."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest

from edge.config import CameraConfig
from edge.sources import CameraSource, Frame, open_source
from tests.fixtures.rtsp import RtspServer, free_port

pytestmark = pytest.mark.slow

FAST_RECOVERY = dict(open_timeout_s=3, read_timeout_s=2, stall_timeout_s=2, reconnect_min_s=0.3, reconnect_max_s=1.5)


def wait_for(predicate: Callable[[], bool], timeout: float, every: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return predicate()


def collect(source: CameraSource, seconds: float) -> list[Frame]:
    frames: list[Frame] = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        frame = source.read(left)
        if frame is not None:
            frames.append(frame)
    return frames


def test_rtsp_frames_arrive_at_detect_fps(rtsp_server: RtspServer):
    source = open_source(CameraConfig(id="cam1", url=rtsp_server.url, detect_fps=2, decode="all"))
    try:
        assert source.read(10.0) is not None, source.health
        collect(source, 0.6)  # skip the burst of frames buffered while connecting
        frames = collect(source, 4.0)
        health = source.health
    finally:
        source.stop()
    assert 7 <= len(frames) <= 9, [round(f.timestamp, 2) for f in frames]
    gaps = [b.timestamp - a.timestamp for a, b in zip(frames, frames[1:], strict=False)]
    assert all(0.3 < g < 0.7 for g in gaps), gaps
    assert abs(frames[-1].timestamp - time.time()) < 2
    assert frames[0].image.shape == (480, 640, 3)
    assert health.state == "online"
    assert 24 <= health.input_fps <= 36  # the clip is 30 fps
    assert health.frames_decoded > 100 and health.frames_dropped == 0
    assert health.reconnects == 0 and health.last_error is None
    json.dumps(health.to_dict())


def test_rtsp_auto_decode_switches_to_keyframes_when_they_meet_detect_fps(rtsp_server: RtspServer):
    """GOP 25 at 30 fps: a keyframe every 0.83 s, enough for 1 fps; 'auto' measures that, then decodes only those."""
    source = open_source(CameraConfig(id="cam1", url=rtsp_server.url, detect_fps=1, decode="auto"))
    try:
        assert source.read(10.0) is not None, source.health
        # still measuring the keyframe interval: PyAV skips only non-reference frames meanwhile, OpenCV decodes all
        assert source.health.decode in ("nonref", "all")
        assert wait_for(lambda: source.health.decode == "keyframes", 8), source.health
        assert source.read(10.0) is not None, source.health
        before = source.health
        frames = collect(source, 3.0)
        after = source.health
    finally:
        source.stop()
    assert after.state == "online" and after.reconnects == 0  # switching decoders is not a reconnect
    assert 2 <= len(frames) <= 4
    assert frames[0].image.shape == (480, 640, 3)
    assert after.frames_decoded - before.frames_decoded <= 6  # ~1.2 keyframes/s instead of 30 frames/s


def test_rtsp_server_loss_and_return_without_recreating_the_source(rtsp_server: RtspServer):
    source = open_source(CameraConfig(id="cam1", url=rtsp_server.url, detect_fps=2, decode="all", **FAST_RECOVERY))
    try:
        assert source.read(10.0) is not None
        assert source.health.state == "online"

        rtsp_server.stop()
        assert wait_for(lambda: source.health.state in ("stalled", "offline"), 6), source.health
        down = source.health
        assert down.last_error and "127.0.0.1" in down.last_error
        collect(source, 0.1)  # drain a frame that may have been sampled before the loss

        rtsp_server.start()  # same port, same mount
        back_at = time.monotonic()
        frame = source.read(10.0)
        assert frame is not None, source.health
        assert time.monotonic() - back_at < 10
        health = source.health
        assert health.state == "online"
        assert health.reconnects >= 1
        assert health.last_frame_at is not None and abs(health.last_frame_at - time.time()) < 2
    finally:
        source.stop()


def test_bad_url_and_wrong_credentials_are_reported_while_another_camera_runs(
    rtsp_server_factory: Callable[..., RtspServer],
):
    server = rtsp_server_factory(mount="secure", user="viewer", password="s3cret-pass")
    good = open_source(CameraConfig(id="good", url=server.url, detect_fps=2, decode="all", **FAST_RECOVERY))
    nothing = open_source(
        CameraConfig(id="nothing", url=f"rtsp://127.0.0.1:{free_port()}/cam", detect_fps=2, **FAST_RECOVERY)
    )
    wrong = open_source(
        CameraConfig(id="wrong", url=server.url_with("viewer", "not-the-pass"), detect_fps=2, **FAST_RECOVERY)
    )
    try:
        assert good.read(10.0) is not None, good.health
        assert wait_for(lambda: nothing.health.last_error is not None and wrong.health.last_error is not None, 8)
        frames = collect(good, 2.0)
        assert len(frames) >= 3
        assert good.health.state == "online"

        h_nothing, h_wrong = nothing.health, wrong.health
        assert h_nothing.state in ("offline", "connecting")
        assert "connection refused" in h_nothing.last_error
        assert h_wrong.state in ("offline", "connecting")
        assert "authentication failed" in h_wrong.last_error and "401" in h_wrong.last_error
        for h in (h_wrong, good.health):
            text = json.dumps(h.to_dict())
            assert "not-the-pass" not in text and "s3cret-pass" not in text
            assert "viewer:***@" in h.url
        assert wait_for(lambda: nothing.health.reconnects >= 1, 5)  # it keeps trying, with back-off
    finally:
        for s in (good, nothing, wrong):
            s.stop()


def test_hung_stream_is_marked_stalled_and_restarted(rtsp_server: RtspServer):
    """A frozen server keeps the TCP connection open but sends nothing: only the stall timeout notices."""
    source = open_source(CameraConfig(id="cam1", url=rtsp_server.url, detect_fps=2, decode="all", **FAST_RECOVERY))
    try:
        assert source.read(10.0) is not None
        rtsp_server.pause()
        paused_at = time.monotonic()
        assert wait_for(lambda: source.health.state == "stalled", 5), source.health
        assert time.monotonic() - paused_at >= 1.5  # not before stall_timeout_s (2 s)
        assert "stalled: no frame for" in source.health.last_error
        rtsp_server.resume()
        collect(source, 0.1)
        assert source.read(10.0) is not None, source.health
        assert wait_for(lambda: source.health.state == "online", 2)
        assert source.health.reconnects >= 1
    finally:
        source.stop()
