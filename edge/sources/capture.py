"""Decoders behind a camera: OpenCV's FFmpeg backend (every frame) and an ffmpeg keyframe-only pipe.

Both follow the same small protocol used by the reader thread: ``open()`` (raises CaptureError with a
masked, operator-readable reason), ``grab()`` → pts in seconds or None, ``retrieve()`` → BGR image of
the last grabbed frame, ``close()``, and ``interrupt()`` (callable from another thread, for the watchdog).
``grab()`` does the minimum per frame: OpenCV decodes but skips the BGR conversion, which only
``retrieve()`` pays for, so unsampled frames are cheap.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import shutil
import subprocess
import threading
from collections import deque
from typing import Protocol

import cv2
import numpy as np

from edge.config import CameraSettings
from edge.redact import mask_url
from edge.sources.diagnose import explain_open_failure, rtsp_preflight
from edge.sources.urls import SourceKind, file_path, scrub, source_kind

log = logging.getLogger(__name__)
_OPTIONS_VAR = "OPENCV_FFMPEG_CAPTURE_OPTIONS"


# OpenCV reads OPENCV_FFMPEG_CAPTURE_OPTIONS from the environment while a capture opens (and opens every
# capture under its own process-wide lock anyway). Unset, it asks RTSP servers for TCP (rtsp_flags=prefer_tcp),
# our default; only a UDP camera sets the variable, so opens hold this lock to see a consistent value. The
# RTSP preflight (diagnose.rtsp_preflight) runs before, outside both locks, so a silent camera never holds them.
_OPEN_LOCK = threading.Lock()
if os.environ.pop(_OPTIONS_VAR, None) is not None:
    log.warning("%s is ignored: set rtsp_transport per camera in cameras.yaml", _OPTIONS_VAR)


class CaptureError(RuntimeError):
    """A stream could not be opened or read. The message is safe to log (credentials masked)."""


class Capture(Protocol):
    kind: SourceKind
    decode: str

    def open(self) -> None: ...
    def grab(self) -> float | None: ...
    def retrieve(self) -> np.ndarray | None: ...
    def close(self) -> None: ...
    def interrupt(self) -> None: ...
    @property
    def is_keyframe(self) -> bool: ...


class OpenCvCapture:
    """cv2.VideoCapture with the FFmpeg backend, TCP transport for RTSP and open/read timeouts."""

    decode = "all"

    def __init__(self, url: str, settings: CameraSettings):
        self.url = url
        self.kind = source_kind(url)
        self.settings = settings
        self._cap: cv2.VideoCapture | None = None

    def _timeouts(self) -> list[int]:
        read_s = min(self.settings.read_timeout_s, self.settings.stall_timeout_s)
        return [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(self.settings.open_timeout_s * 1000),
            cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(read_s * 1000),
        ]  # fmt: skip

    def open(self) -> None:
        if self.kind == "device":
            target: str | int = int(self.url) if self.url.isdigit() else self.url
            cap = cv2.VideoCapture(target, cv2.CAP_V4L2)
        else:
            target = str(file_path(self.url)) if self.kind == "file" else self.url
            if self.kind == "rtsp":
                problem = rtsp_preflight(self.url, self.settings.open_timeout_s)
                if problem:
                    raise CaptureError(problem)
            udp = self.kind == "rtsp" and self.settings.rtsp_transport == "udp"
            with _OPEN_LOCK:
                if udp:
                    os.environ[_OPTIONS_VAR] = "rtsp_transport;udp"
                try:
                    cap = cv2.VideoCapture(target, cv2.CAP_FFMPEG, self._timeouts())
                finally:
                    os.environ.pop(_OPTIONS_VAR, None)
        if not cap.isOpened():
            cap.release()
            raise CaptureError(explain_open_failure(self.url, min(self.settings.open_timeout_s, 5.0)))
        self._cap = cap

    def grab(self) -> float | None:
        if self._cap is None or not self._cap.grab():
            return None
        return max(0.0, self._cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0)

    @property
    def is_keyframe(self) -> bool:
        """Whether the packet just read was a keyframe (FFmpeg backend; used to measure the GOP)."""
        return bool(self._cap is not None and self._cap.get(cv2.CAP_PROP_LRF_HAS_KEY_FRAME))

    def retrieve(self) -> np.ndarray | None:
        if self._cap is None:
            return None
        ok, image = self._cap.retrieve()
        return image if ok else None

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def interrupt(self) -> None:
        """Nothing to do: the read timeout bounds how long grab() can block."""


def pyav_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("av") is not None


# skip_frame values of FFmpeg's decoder for each decode mode
_SKIP = {"all": "DEFAULT", "nonref": "NONREF", "keyframes": "NONKEY"}
_MAX_BAD_PACKETS = 250  # consecutive undecodable packets before the stream counts as lost


class PyAvCapture:
    """FFmpeg in-process through PyAV, with the decoder under control.

    - ``mode`` sets the decoder's ``skip_frame``: ``all``, ``nonref`` (frames no other frame refers to, e.g.
      B-frames, are never decoded) or ``keyframes``; ``set_mode`` changes it on the open stream, without
      reconnecting, so ``decode: auto`` can settle while it watches the stream.
    - ``decoder_threads`` bounds FFmpeg's decoder threads for this camera (its default is cores + 1 per stream).
    - ``retrieve()`` converts YUV → BGR in FFmpeg's scaler, scaled to ``decode_width`` in the same pass.
    - Decoding and conversion run with the GIL released, so readers do not hold up the detector thread.
    - pts: the frame's pts, or its dts when pts are unusable (AVI with B-frames), as FFmpeg's best-effort
      timestamp does.
    """

    def __init__(self, url: str, settings: CameraSettings, mode: str = "all"):
        self.url = url
        self.kind = source_kind(url)
        self.settings = settings
        self.decode = mode
        self.ended_cleanly = False
        self._container = None
        self._stream = None
        self._packets = None
        self._pending: list = []
        self._frame = None
        self._error: str | None = None
        self._last = {"pts": None, "dts": None}
        self._faults = {"pts": 0, "dts": 0}

    def open(self) -> None:
        import av

        if self.kind == "file" and not file_path(self.url).is_file():
            raise CaptureError(explain_open_failure(self.url, 1.0))
        if self.kind == "rtsp":
            problem = rtsp_preflight(self.url, self.settings.open_timeout_s)
            if problem:
                raise CaptureError(problem)
        options = {}
        if self.kind == "rtsp":
            options["rtsp_transport"] = self.settings.rtsp_transport
        target = str(file_path(self.url)) if self.kind == "file" else self.url
        read_s = min(self.settings.read_timeout_s, self.settings.stall_timeout_s)
        try:
            container = av.open(target, options=options, timeout=(self.settings.open_timeout_s, read_s))
        except (av.error.FFmpegError, OSError) as e:
            log.debug("PyAV open failed for %s: %s", mask_url(self.url), scrub(str(e), self.url))
            raise CaptureError(explain_open_failure(self.url, min(self.settings.open_timeout_s, 5.0))) from None
        if not container.streams.video:
            container.close()
            raise CaptureError(f"no video stream in {mask_url(self.url)}")
        stream = container.streams.video[0]
        threads = self.settings.decoder_threads
        stream.codec_context.thread_count = threads
        stream.thread_type = "SLICE" if threads == 1 else "AUTO"
        stream.codec_context.skip_frame = _SKIP[self.decode]
        if self.settings.decoder_skip_loop_filter:
            stream.codec_context.options = {"skip_loop_filter": "all"}  # read when the decoder opens (first packet)
        self._container, self._stream = container, stream
        self._packets = container.demux(stream)

    def set_mode(self, mode: str) -> None:
        """Change which frames the decoder skips, on the open stream."""
        self.decode = mode
        if self._stream is not None:
            self._stream.codec_context.skip_frame = _SKIP[mode]

    def _next_frame(self):
        import av

        bad = 0
        while not self._pending:
            try:
                packet = next(self._packets)
            except StopIteration:
                self.ended_cleanly = True
                return None
            except (av.error.FFmpegError, OSError) as e:  # read timeout, connection closed, I/O error
                self._error = scrub(str(e), self.url)
                return None
            try:
                self._pending = list(packet.decode())  # a flush packet (EOF) returns the delayed frames
            except av.error.InvalidDataError as e:  # a corrupt packet: skip it, like a player does
                bad += 1
                if bad >= _MAX_BAD_PACKETS:
                    self._error = f"undecodable stream: {scrub(str(e), self.url)}"
                    return None
        return self._pending.pop(0)

    def _seconds(self, frame) -> float:
        """FFmpeg's guess_correct_pts: pts unless they went backwards more often than dts did."""
        for key in ("pts", "dts"):
            value, last = getattr(frame, key), self._last[key]
            if value is not None:
                if last is not None and value <= last:
                    self._faults[key] += 1
                self._last[key] = value
        use = "pts" if frame.pts is not None and (self._faults["pts"] <= self._faults["dts"] or frame.dts is None) \
            else "dts"
        value = getattr(frame, use)
        if value is None:
            return -1.0
        return float(value * (frame.time_base or self._stream.time_base))

    def grab(self) -> float | None:
        if self._container is None:
            return None
        frame = self._next_frame()
        if frame is None:
            return None
        self._frame = frame
        return max(0.0, self._seconds(frame))

    @property
    def is_keyframe(self) -> bool:
        return bool(self._frame is not None and self._frame.key_frame)

    def retrieve(self) -> np.ndarray | None:
        frame = self._frame
        if frame is None:
            return None
        width = self.settings.decode_width
        if width and width < frame.width:
            height = max(2, round(frame.height * width / frame.width / 2) * 2)
            return frame.to_ndarray(format="bgr24", width=width, height=height)
        return frame.to_ndarray(format="bgr24")

    def failure_reason(self) -> str:
        if self.kind == "file":
            return f"no decodable video frame in {self.url}" + (f" ({self._error})" if self._error else "")
        detail = self._error or "connection closed or read timeout"
        return f"stream lost: no frame from {mask_url(self.url)} ({detail})"

    def close(self) -> None:
        container, self._container = self._container, None
        self._packets, self._pending, self._frame = None, [], None
        if container is not None:
            try:
                container.close()
            except Exception as e:  # closing a broken stream must not raise into the reader
                log.debug("closing %s: %s", mask_url(self.url), e)

    def interrupt(self) -> None:
        """Nothing to do: the read timeout (PyAV's interrupt callback) bounds how long grab() can block."""


def pyav_keyframe_interval(path: str, window_s: float = 60.0) -> float | None:
    """Largest keyframe gap (s) in the first ``window_s`` of a file from packet flags, in-process (no ffprobe)."""
    import av

    try:
        container = av.open(path)
    except (av.error.FFmpegError, OSError):
        return None
    try:
        if not container.streams.video:
            return None
        stream = container.streams.video[0]
        keys: list[float] = []
        for packet in container.demux(stream):
            t = packet.pts if packet.pts is not None else packet.dts
            if t is None:
                continue
            t = float(t * stream.time_base)
            if packet.is_keyframe:
                keys.append(t)
            if t > window_s:
                break
    except (av.error.FFmpegError, OSError):
        return None
    finally:
        container.close()
    keys.sort()
    if len(keys) < 2:
        return None
    return max(b - a for a, b in zip(keys, keys[1:], strict=False))


_SHOWINFO_RE = re.compile(r"Parsed_showinfo.*?\bpts_time:\s*(?P<pts>-?[\d.]+).*?\bs:(?P<w>\d+)x(?P<h>\d+)")
_DONE = object()


class FfmpegKeyframeCapture:
    """``ffmpeg -skip_frame nokey``: the decoder only touches keyframes, piped out as raw BGR.

    Only useful when keyframes come at least as often as the analysis rate; see ``decode: auto``.
    The pts of each frame comes from the ``showinfo`` filter on stderr, which precedes the frame's
    bytes on stdout.
    """

    decode = "keyframes"
    is_keyframe = True

    def __init__(self, url: str, settings: CameraSettings, realtime: bool = False):
        self.url = url
        self.kind = source_kind(url)
        self.settings = settings
        self.realtime = realtime
        self._proc: subprocess.Popen[bytes] | None = None
        self._info: queue.Queue[object] = queue.Queue()
        self._tail: deque[str] = deque(maxlen=12)
        self._image: np.ndarray | None = None
        self.ended_cleanly = False

    def command(self) -> list[str]:
        exe = shutil.which("ffmpeg")
        if exe is None:
            raise CaptureError("ffmpeg is not installed (needed for keyframe-only decoding)")
        cmd = [exe, "-hide_banner", "-nostdin", "-nostats", "-loglevel", "info"]
        if self.kind == "rtsp":
            timeout_us = str(int(self.settings.open_timeout_s * 1e6))
            cmd += ["-rtsp_transport", self.settings.rtsp_transport, "-timeout", timeout_us]
        elif self.kind == "http":
            cmd += ["-rw_timeout", str(int(self.settings.read_timeout_s * 1e6))]
        # Probing normally decodes frames to learn the stream's size; with non-key frames skipped it would
        # wait the full default 5 s, so keep it short (the SDP / container header carries the size anyway).
        cmd += ["-analyzeduration", "1000000"]
        if self.realtime:
            cmd += ["-re"]
        target = str(file_path(self.url)) if self.kind == "file" else self.url
        cmd += ["-skip_frame", "nokey", "-i", target, "-map", "0:v:0", "-an", "-sn", "-dn", "-vf", "showinfo",
                "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "bgr24", "pipe:1"]  # fmt: skip
        return cmd

    def open(self) -> None:
        if self.kind == "file" and not file_path(self.url).is_file():
            raise CaptureError(explain_open_failure(self.url, 1.0))
        self._proc = subprocess.Popen(self.command(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
        threading.Thread(target=self._read_stderr, args=(self._proc,), daemon=True, name="ffmpeg-stderr").start()

    def _read_stderr(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stderr is not None
        for raw in iter(proc.stderr.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip()
            m = _SHOWINFO_RE.search(line)
            if m:
                self._info.put((float(m["pts"]), int(m["w"]), int(m["h"])))
            elif line and "showinfo" not in line:
                self._tail.append(scrub(line, self.url))
        self._info.put(_DONE)

    def grab(self) -> float | None:
        if self._proc is None:
            return None
        timeout = min(self.settings.read_timeout_s, self.settings.stall_timeout_s)
        if self._image is None and self._info.empty():
            timeout = max(timeout, self.settings.open_timeout_s)  # the first frame includes connecting
        try:
            item = self._info.get(timeout=timeout)
        except queue.Empty:
            return None
        if item is _DONE:
            self.ended_cleanly = self._proc.wait(timeout=5) == 0
            return None
        pts, w, h = item  # type: ignore[misc]
        buf = bytearray(w * h * 3)
        view, got = memoryview(buf), 0
        assert self._proc.stdout is not None
        while got < len(buf):
            n = self._proc.stdout.readinto(view[got:])
            if not n:
                return None
            got += n
        self._image = np.frombuffer(buf, dtype=np.uint8).reshape(h, w, 3)
        return max(0.0, pts)

    def retrieve(self) -> np.ndarray | None:
        return self._image

    def failure_reason(self) -> str:
        """Why ffmpeg stopped, from its last stderr lines (already scrubbed)."""
        interesting = [ln for ln in self._tail if not ln.startswith(("  ", "Input #", "Output #", "Stream mapping"))]
        detail = interesting[-1] if interesting else "no output"
        if any("401" in ln for ln in self._tail):
            detail = "authentication failed (401 Unauthorized)"
        return f"ffmpeg stopped reading {mask_url(self.url)}: {detail}"

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=5)
            for stream in (proc.stdout, proc.stderr):
                if stream:
                    stream.close()

    def interrupt(self) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()


def probe_keyframe_interval(url: str, window_s: float = 60.0, timeout_s: float = 10.0) -> float | None:
    """Largest gap between keyframes (s) in a file's first ``window_s`` seconds, from packet flags.

    Reads packets only (no decoding), so it takes milliseconds: in-process with PyAV when installed, else with
    ffprobe. None when it cannot tell (neither available, unreadable file, fewer than two keyframes).
    """
    if pyav_available():
        return pyav_keyframe_interval(str(file_path(url)), window_s)
    exe = shutil.which("ffprobe")
    if exe is None:
        return None
    cmd = [exe, "-v", "error", "-select_streams", "v:0", "-read_intervals", f"%+{window_s:g}",
           "-show_entries", "packet=pts_time,flags", "-of", "csv=p=0", str(file_path(url))]  # fmt: skip
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False).stdout
    except subprocess.TimeoutExpired:
        return None
    rows = (ln.partition(",") for ln in out.splitlines())
    keys = sorted(float(p) for p, _, flags in rows if "K" in flags and p not in ("", "N/A"))
    if len(keys) < 2:
        return None
    return max(b - a for a, b in zip(keys, keys[1:], strict=False))
