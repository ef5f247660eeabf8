"""CameraSource: one reader thread per camera, sampling at detect_fps, reconnecting on its own.

The reader thread opens the stream, grabs every frame (cheap: no colour conversion), retrieves only
the frames the sampler picks, and hands them to the consumer through a one-frame slot. Failures never
escape the thread: they show up in ``health`` and the stream is reopened with exponential back-off.
A watchdog thread marks a stream ``stalled`` when a read blocks longer than ``stall_timeout_s`` and
forces a restart.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import threading
import time

from edge.config import CameraConfig
from edge.redact import mask_url
from edge.sources.backoff import Backoff
from edge.sources.capture import (
    Capture,
    CaptureError,
    FfmpegKeyframeCapture,
    OpenCvCapture,
    PyAvCapture,
    probe_keyframe_interval,
    pyav_available,
)
from edge.sources.frame import Frame
from edge.sources.handoff import FrameSlot
from edge.sources.health import CameraHealth, CameraState, FpsMeter
from edge.sources.sampler import RateSampler
from edge.sources.urls import scrub, source_kind

log = logging.getLogger(__name__)

# 'auto' on a live stream: how long to watch keyframes before settling on full decoding.
AUTO_OBSERVE_MIN_S = 6.0
# A keyframe gap may exceed the sampling period by this much and still count as meeting detect_fps.
KEYFRAME_SLACK_S = 0.05


def lower_thread_priority(nice: int) -> None:
    """Give the calling thread a nice value (Linux schedules threads individually; elsewhere this does nothing)."""
    if nice <= 0 or not sys.platform.startswith("linux"):
        return
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
    except OSError as e:  # e.g. a container that forbids it: run at normal priority
        log.debug("cannot lower reader thread priority: %s", e)


READER_THREAD_PREFIX = "gw-rd-"  # native name of reader threads (and of FFmpeg threads they start): top -H, /proc


def name_native_thread(name: str) -> None:
    """Set the calling thread's Linux name (15 bytes), which threads it creates inherit: FFmpeg's decoder threads
    then carry their camera's reader name, so per-thread CPU (``/proc/self/task/*/stat``) shows decode cost."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None).prctl(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME
    except (OSError, AttributeError) as e:
        log.debug("cannot name reader thread: %s", e)


class CameraSource:
    """Frames from one camera (RTSP, http MJPEG, file or device) at the camera's ``detect_fps``."""

    def __init__(self, camera: CameraConfig, *, start_epoch: float | None = None):
        self.camera = camera
        self.url = camera.detect_url or camera.url
        self.kind = source_kind(self.url)
        self.is_file = self.kind == "file"
        self.fast = self.is_file and camera.playback == "fast"
        self.period = 1.0 / camera.detect_fps
        self._stall_after = min(camera.read_timeout_s, camera.stall_timeout_s)
        self._start_epoch = start_epoch
        self._slot = FrameSlot(blocking=self.fast)
        self._stop = threading.Event()
        self._restart = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._watchdog: threading.Thread | None = None
        self._cap: Capture | None = None
        self._state = CameraState.disabled if not camera.enabled else CameraState.connecting
        self._last_error: str | None = None
        self._reconnects = 0
        self._decoded = 0
        self._sampled = 0
        self._last_frame_at: float | None = None
        self._last_frame_mono: float | None = None
        self._grab_since: float | None = None
        self._fps = FpsMeter()
        self._ended = False
        self._index = 0
        self._cpu_mark: float | None = None  # reader-thread CPU time at the previous sampled frame
        self._media_offset = 0.0  # added to file pts so a looping file's clock keeps increasing
        self._last_media_t: float | None = None
        self._frame_step = 0.04
        self._pace_origin: float | None = None
        self._sampler = RateSampler(camera.detect_fps)
        self._decode: str | None = None if camera.decode == "auto" else camera.decode
        self._pyav = self.kind in ("file", "rtsp", "http") and (
            camera.decoder == "pyav" or (camera.decoder == "auto" and pyav_available())
        )
        self._prev_decoded_t: float | None = None  # stream time of the previous decoded frame (nonref guard)
        self._watch_keys = True  # decode=auto on a live stream: still watching keyframe gaps
        self._pyav_mode: str | None = None  # the PyAV decoder's current skip mode
        self._key_pts: list[float] = []
        self._observe_start = 0.0
        self._observe_pts0: float | None = None  # stream time of the first frame seen while observing

    # ------------------------------------------------------------------ public API

    def start(self) -> None:
        """Start the reader thread. Never raises for an unreachable camera: see ``health``."""
        if not self.camera.enabled or self._thread is not None:
            return
        if self._start_epoch is None:
            self._start_epoch = time.time()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"camera-{self.camera.id}")
        self._watchdog = threading.Thread(target=self._watch, daemon=True, name=f"watchdog-{self.camera.id}")
        self._thread.start()
        self._watchdog.start()

    def stop(self, timeout: float = 5) -> None:
        self._stop.set()
        self._slot.close()
        cap = self._cap
        if cap is not None:
            cap.interrupt()
        deadline = time.monotonic() + timeout
        for t in (self._thread, self._watchdog):
            if t is not None:
                t.join(max(0.0, deadline - time.monotonic()))

    def read(self, timeout: float) -> Frame | None:
        """The newest sampled frame not yet returned, or None after ``timeout`` seconds."""
        return self._slot.take(timeout)

    def peek(self) -> Frame | None:
        """The frame ``read(0)`` would return now, left in place (the reader may still replace it by a newer one)."""
        return self._slot.peek()

    @property
    def has_frame(self) -> bool:
        """A sampled frame is waiting to be read (``read(0)`` would return it)."""
        return not self._slot.empty

    @property
    def finished(self) -> bool:
        """A non-looping file reached its end and every sampled frame was consumed."""
        return self._ended and self._slot.empty

    @property
    def health(self) -> CameraHealth:
        with self._lock:
            return CameraHealth(
                camera_id=self.camera.id,
                state=str(self._state),
                input_fps=self._fps.rate(time.monotonic()) if self._state == CameraState.online else 0.0,
                last_frame_at=self._last_frame_at,
                reconnects=self._reconnects,
                last_error=self._last_error,
                frames_decoded=self._decoded,
                frames_sampled=self._sampled,
                frames_dropped=self._slot.dropped,
                url=mask_url(self.url),
                decode=self._decode_shown(),
            )

    # ------------------------------------------------------------------ reader thread

    def _set(self, state: CameraState, error: str | None = None) -> None:
        with self._lock:
            if state != self._state:
                log.info("camera %s: %s -> %s%s", self.camera.id, self._state, state, f" ({error})" if error else "")
            self._state = state
            if error is not None:
                self._last_error = error

    def _decode_shown(self) -> str:
        if self._decode is None and self._pyav_mode is not None:
            return self._pyav_mode  # auto, still watching the stream: what the decoder does now
        return self._decode or "all"

    def _choose_capture(self) -> Capture:
        if self._pyav:
            return self._choose_pyav()
        if self._decode == "nonref":
            self._decode = "all"  # OpenCV cannot skip frames in the decoder
        if self._decode is None and self.is_file:
            gap = probe_keyframe_interval(self.url)
            self._decode = "keyframes" if gap is not None and self._keyframes_suffice(gap) else "all"
            log.info(
                "camera %s: decode=auto, keyframe gap %s s -> %s",
                self.camera.id,
                None if gap is None else round(gap, 2),
                self._decode,
            )
        if self._decode is None and self.kind != "rtsp":
            self._decode = "all"  # MJPEG and devices: every frame is independent, nothing to skip
        if self._decode == "keyframes":
            return FfmpegKeyframeCapture(self.url, self.camera)
        self._key_pts = []
        self._observe_pts0 = None
        return OpenCvCapture(self.url, self.camera)

    def _choose_pyav(self) -> Capture:
        """PyAV: the mode is the decoder's skip_frame, changed in place while the stream runs (no reconnect)."""
        if self._decode is None and self.is_file:
            gap = probe_keyframe_interval(self.url)
            if gap is not None and self._keyframes_suffice(gap):
                self._decode = "keyframes"
            log.info(
                "camera %s: decode=auto, keyframe gap %s s -> %s",
                self.camera.id,
                None if gap is None else round(gap, 2),
                self._decode or "nonref while the frame gaps allow",
            )
        if self._decode is None and self.kind == "http":
            self._decode = "all"  # MJPEG: every frame is independent, nothing to skip
        self._key_pts = []
        self._observe_pts0 = None
        self._prev_decoded_t = None
        self._watch_keys = True
        # undecided (auto): start without non-reference frames; _nonref_guard / _observe_keyframes settle it
        self._pyav_mode = self._decode or "nonref"
        return PyAvCapture(self.url, self.camera, self._pyav_mode)

    def _nonref_guard(self, cap: PyAvCapture, t: float) -> None:
        """decode=auto with B-frames skipped: if the frames left come further apart than the sampling period,
        decode all of them from now on (a stream without B-frames loses nothing either way)."""
        prev, self._prev_decoded_t = self._prev_decoded_t, t
        if prev is None or t <= prev or t - prev <= self.period + KEYFRAME_SLACK_S:
            return
        cap.set_mode("all")
        self._decode = self._pyav_mode = "all"
        log.info(
            "camera %s: decode=auto, %.2f s between decodable frames without B-frames -> all", self.camera.id, t - prev
        )

    def _run(self) -> None:
        lower_thread_priority(self.camera.reader_nice)
        name_native_thread(f"{READER_THREAD_PREFIX}{self.camera.id}")
        backoff = Backoff(self.camera.reconnect_min_s, self.camera.reconnect_max_s)
        count_attempt = False
        while not self._stop.is_set():
            if count_attempt:
                with self._lock:
                    self._reconnects += 1
            count_attempt = True
            if self._state != CameraState.stalled:  # a stalled camera stays 'stalled' until it delivers again
                self._set(CameraState.connecting)
            try:
                cap = self._choose_capture()
                cap.open()
            except CaptureError as e:
                self._set(CameraState.offline, str(e))
                self._stop.wait(backoff.next_delay())
                continue
            except Exception as e:  # a bug or an odd backend error must not kill the camera
                self._set(CameraState.offline, scrub(f"{type(e).__name__}: {e}", self.url))
                self._stop.wait(backoff.next_delay())
                continue
            self._cap = cap
            try:
                outcome = self._pump(cap, backoff)
            except Exception as e:
                log.exception("camera %s: reader failed", self.camera.id)
                outcome = "lost"
                self._set(CameraState.offline, scrub(f"reader error {type(e).__name__}: {e}", self.url))
            finally:
                self._cap = None
                cap.close()
            if outcome == "stop":
                break
            if outcome == "eof":
                if self.camera.loop:
                    self._media_offset = (self._last_media_t or 0.0) + self._frame_step
                    count_attempt = False
                    continue
                self._ended = True
                self._set(CameraState.finished)
                break
            if outcome == "switch":
                count_attempt = False
                continue
            self._stop.wait(backoff.next_delay())

    def _pump(self, cap: Capture, backoff: Backoff) -> str:
        """Read until the stream ends, fails, stalls or stop is requested; returns which."""
        self._restart.clear()
        got_frame = False
        if not self.is_file:
            self._sampler.reset()
        while True:
            if self._stop.is_set():
                return "stop"
            if self._restart.is_set():
                return "stalled"
            grab_start = self._grab_since = time.monotonic()
            pts = cap.grab()
            now = time.monotonic()
            self._grab_since = None
            # A read that ran into the timeout is a stall even if FFmpeg then hands back a frame it still
            # had buffered (it does, on RTSP): otherwise a hung camera would trickle one stale frame per timeout.
            if self._restart.is_set() or (got_frame and now - grab_start >= self._stall_after * 0.95):
                if self._state != CameraState.stalled:
                    waited = now - max(grab_start, self._last_frame_mono or 0.0)
                    self._set(CameraState.stalled, f"stalled: no frame for {waited:.1f} s, restarting the stream")
                return "stalled"
            if pts is None:
                if self._stop.is_set():
                    return "stop"
                if self._restart.is_set():
                    return "stalled"
                if self.is_file and (got_frame or self._last_media_t is not None):
                    ended = not isinstance(cap, FfmpegKeyframeCapture | PyAvCapture) or cap.ended_cleanly
                    if ended:
                        return "eof"
                if isinstance(cap, FfmpegKeyframeCapture | PyAvCapture):
                    reason = cap.failure_reason()
                elif self.is_file:
                    reason = f"no decodable video frame in {self.url}"
                else:
                    reason = f"stream lost: no frame from {mask_url(self.url)} (connection closed or read timeout)"
                self._set(CameraState.offline, reason)
                return "lost"
            got_frame = True
            with self._lock:
                self._decoded += 1
                self._fps.tick(now)
                self._last_frame_mono = now
                self._last_frame_at = time.time()
            if self._state != CameraState.online:
                self._set(CameraState.online)
            backoff.reset()

            if self.is_file:
                media_t = self._media_offset + pts
                if self._last_media_t is not None and media_t > self._last_media_t:
                    self._frame_step = media_t - self._last_media_t
                self._last_media_t = media_t
                if not self.fast:
                    self._pace(media_t)
                clock = media_t
            else:
                media_t = pts
                clock = now
                if self._decode is None and self._watch_keys and self._observe_keyframes(cap, pts, now):
                    return "switch"
            if isinstance(cap, PyAvCapture) and cap.decode == "nonref" and self.camera.decode == "auto":
                self._nonref_guard(cap, media_t)

            if not self._sampler.due(clock):
                continue
            image = cap.retrieve()
            if image is None:
                continue
            captured = time.monotonic()
            assert self._start_epoch is not None
            timestamp = self._start_epoch + media_t if self.fast else time.time()
            cpu = time.thread_time()
            decode_cpu_ms = (cpu - self._cpu_mark) * 1000 if self._cpu_mark is not None else 0.0
            self._cpu_mark = cpu
            frame = Frame(self.camera.id, image, timestamp, media_t, self._index, captured, decode_cpu_ms)
            self._index += 1
            with self._lock:
                self._sampled += 1
            if not self._slot.put(frame, self._stop):
                return "stop"

    def _pace(self, media_t: float) -> None:
        """Realtime file playback: do not run ahead of the file's clock."""
        now = time.monotonic()
        if self._pace_origin is None or now - (self._pace_origin + media_t) > 2.0:
            self._pace_origin = now - media_t  # start, or fell far behind: re-anchor instead of bursting
        delay = self._pace_origin + media_t - now
        if delay > 0:
            self._stop.wait(delay)

    def _keyframes_suffice(self, gap: float) -> bool:
        """Keyframes this far apart meet detect_fps, and waiting for one cannot look like a stall."""
        return gap <= self.period + KEYFRAME_SLACK_S and gap < self._stall_after / 2

    def _observe_keyframes(self, cap: Capture, pts: float, now: float) -> bool:
        """decode=auto on a live stream: switch to keyframe-only decoding if keyframes meet detect_fps.

        Judged on the stream's own clock: a reader that starts slowly on a busy box sees less of the stream in
        the same wall time, and must not settle on decoding everything because of that.
        """
        if self._observe_pts0 is None:
            self._observe_pts0, self._observe_start = pts, now
        span = pts - self._observe_pts0
        window = max(AUTO_OBSERVE_MIN_S, 3 * self.period)
        if cap.is_keyframe:
            self._key_pts.append(pts)
        gaps = [b - a for a, b in zip(self._key_pts, self._key_pts[1:], strict=False)]
        pyav = isinstance(cap, PyAvCapture)
        if gaps and not self._keyframes_suffice(max(gaps)):
            self._decode = "all"
        elif shutil.which("ffmpeg") is None and not pyav:
            self._decode = "all"  # keyframe-only decoding runs through the ffmpeg binary
        elif len(gaps) >= 2 and span >= min(AUTO_OBSERVE_MIN_S, 3 * self.period):
            self._decode = "keyframes"
        elif span > window or now - self._observe_start > 4 * window:
            self._decode = "all"  # keyframes too sparse to even see two gaps (or a stream clock that stands still)
        if pyav and self._decode is not None:
            if self._decode == "keyframes":
                cap.set_mode("keyframes")  # in place: PyAV changes the decoder's skip_frame on the open stream
                self._pyav_mode = "keyframes"
            elif cap.decode == "nonref":
                self._decode = None  # keyframes too sparse; stay on nonref while _nonref_guard allows it
                self._watch_keys = False
        if self._decode is not None or not self._watch_keys:
            log.info(
                "camera %s: decode=auto, keyframe gaps %s s -> %s",
                self.camera.id,
                [round(g, 2) for g in gaps],
                self._decode or "nonref while the frame gaps allow",
            )
        return self._decode == "keyframes" and not pyav

    # ------------------------------------------------------------------ watchdog

    def _watch(self) -> None:
        limit = self.camera.stall_timeout_s
        while not self._stop.wait(0.25):
            since = self._grab_since
            if since is None:
                continue
            ref = max(since, self._last_frame_mono or 0.0)
            waited = time.monotonic() - ref
            if waited > limit and self._state == CameraState.online:
                self._set(CameraState.stalled, f"stalled: no frame for {waited:.1f} s, restarting the stream")
                self._restart.set()
                cap = self._cap
                if cap is not None:
                    cap.interrupt()
