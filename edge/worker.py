"""The edge worker: camera sources → one shared detector → per-camera tracker → zone rules → MQTT.

Threads (2 cores in mind):
- one reader thread per camera (edge.sources) decodes and keeps only the newest sampled frame;
- the pipeline thread (``run``) gathers whichever cameras have a new frame, runs the shared detector on
  them as one batch, then tracking and rules per camera — inference is the expensive part and it runs
  on one thread so cameras never fight over the cores;
- one evidence thread renders snapshots and hands events to the publisher in FIFO order, so per-incident
  order is kept and JPEG encoding never stalls the pipeline;
- the publisher's own network threads (edge.mqtt).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import cv2

from edge.config import CameraConfig, ConfigError, EdgeConfig, TilingConfig, load_config
from edge.detections import Detections
from edge.detectors import ConfiguredDetector, build_detector
from edge.detectors.plausibility import FrontEnd
from edge.detectors.tiling import windows_for_size
from edge.live_frames import LiveFrames
from edge.redact import mask_url
from edge.rules import RuleEngine, Scene
from edge.sources import CameraSource, Frame
from edge.sources.health import FpsMeter
from edge.stats import StageStats
from edge.tracking import ByteTracker

log = logging.getLogger("gridwatch.edge")

EVIDENCE_QUEUE_MAX = 256  # events waiting for snapshot rendering; past this, snapshots are skipped (events never are)


@dataclass
class CameraPipeline:
    """Everything the worker keeps per camera."""

    camera: CameraConfig
    source: CameraSource
    tracker: ByteTracker
    engine: RuleEngine
    front_end: FrontEnd
    # the camera's (or detector's) tiling with its zone windows resolved (EdgeWorker._add_camera)
    tiling: TilingConfig = field(default_factory=TilingConfig)
    frames_analyzed: int = 0
    incidents_opened: int = 0
    last_annotated_at: float = 0.0
    last_frame_size: tuple[int, int] | None = None
    last_counts: Counter = field(default_factory=Counter)
    # frames the detector actually analysed: rate over a minute (detect_fps may be 0.2) and wall time of the last
    analysed_meter: FpsMeter = field(default_factory=lambda: FpsMeter(window_s=60.0))
    last_analysed_at: float | None = None
    # motion gate (edge.motion) and the front end's output of the last frame the detector analysed
    gate: Any = None
    gate_dets: Detections | None = None
    last_served: float = 0.0  # monotonic time this camera's last frame was taken for detection


class EdgeWorker:
    """Runs every enabled camera of one cameras.yaml until ``stop()``.

    ``publisher`` is any object with ``publish_incident(dict)``, ``publish_crowd(dict)`` and
    ``publish_heartbeat(list, dict)`` (edge.mqtt.EdgePublisher); None runs vision only.
    """

    def __init__(
        self,
        config: EdgeConfig,
        *,
        config_path: Path | None = None,
        publisher: Any | None = None,
        detector: ConfiguredDetector | None = None,
        start_epoch: float | None = None,
        print_detections: bool = False,
        reload_interval_s: float = 2.0,
    ):
        self.config = config
        self.config_path = config_path
        self.publisher = publisher
        self.detector = detector or build_detector(config.detector)
        self.start_epoch = start_epoch
        self.print_detections = print_detections
        self.reload_interval_s = reload_interval_s
        self.stats = StageStats()
        self.counters: Counter = Counter()
        self.pipelines: dict[str, CameraPipeline] = {}
        self._stop = threading.Event()
        self._evidence: queue.Queue = queue.Queue()
        self._evidence_thread: threading.Thread | None = None
        self._started_at = time.time()
        self._config_mtime = self._mtime()
        self._last_reload_check = time.monotonic()
        self._last_health_log = time.monotonic()
        self._last_heartbeat = 0.0
        self.last_loop_at = time.monotonic()
        # a clean frame per camera for the dashboard, when the publisher can send them (edge.live_frames)
        self.live_frames: LiveFrames | None = None
        if config.mqtt is not None and hasattr(publisher, "publish_frame"):
            self.live_frames = LiveFrames(config.mqtt.live_frames, config.edge_id, publisher.publish_frame)
        # Benchmarks set this to see each event id with its frame's capture time (end-to-end latency).
        self.on_event_queued: Callable[[str, float], None] | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        for cam in self.config.cameras:
            self._add_camera(cam)
        self._evidence_thread = threading.Thread(target=self._evidence_loop, name="evidence", daemon=True)
        self._evidence_thread.start()
        if self.publisher is not None:
            self.publisher.start()

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        """Stop sources, drain the evidence queue, stop the publisher (it sends what it can while connected and
        keeps unsent events in its outbox)."""
        self._stop.set()
        for p in self.pipelines.values():
            p.source.stop()
            # We stop watching: open incidents close (close_reason "shutdown") so central's view stays true.
            self._close_open_incidents(p, "shutdown")
        self._evidence.put(None)
        if self._evidence_thread:
            self._evidence_thread.join(timeout=10)
        if self.publisher is not None:
            self.publisher.stop()  # sends the closing events just queued while the broker is there

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def _add_camera(self, cam: CameraConfig) -> None:
        source = CameraSource(cam, start_epoch=self.start_epoch)
        engine = RuleEngine(
            cam,
            site=self.config.site,
            edge_id=self.config.edge_id,
            model_name=self.detector.name,
            model_version=self.detector.version,
        )
        tiling = (cam.tiling or self.config.detector.tiling).with_zone_windows(cam.zones)
        self.pipelines[cam.id] = CameraPipeline(
            cam, source, ByteTracker(self.config.tracker), engine, FrontEnd(cam.plausibility), tiling
        )
        source.start()
        log.info("camera %s: %s (%s, detect %.2g fps)", cam.id, mask_url(cam.url),
                 "enabled" if cam.enabled else "disabled", cam.detect_fps)

    def _remove_camera(self, camera_id: str, reason: str = "camera_removed") -> None:
        """Stop a camera's pipeline. Its open incidents close first (``close_reason`` = ``reason``:
        ``camera_removed`` or ``reconfigured``), so central never keeps an incident no edge will close."""
        p = self.pipelines.pop(camera_id, None)
        if p:
            p.source.stop()
            self._close_open_incidents(p, reason)
        if self.live_frames is not None:
            self.live_frames.forget(camera_id)  # a reopened camera sends its first frame at once
            if reason == "camera_removed":
                self.publisher.clear_frame(camera_id)

    def _close_open_incidents(self, p: CameraPipeline, reason: str) -> None:
        """Queue the engine's closing events (RuleEngine.flush) through the evidence thread like every other
        event, so per-incident order is kept."""
        events = p.engine.flush(p.engine.last_timestamp or time.time(), reason)
        for event in events:
            self.counters[f"incident_{event.event}"] += 1
            self._evidence.put((p, event, None, time.monotonic()))
        if events:
            log.info("camera %s: closed %d open incident(s) (%s)", p.camera.id, len(events), reason)

    # ------------------------------------------------------------------ main loop

    def run(self, *, once: bool = False, duration_s: float | None = None, max_frames: int | None = None) -> None:
        """Process frames until stopped. ``once``: one frame per enabled camera, then return."""
        deadline = time.monotonic() + duration_s if duration_s else None
        seen_once: set[str] = set()
        while not self._stop.is_set():
            batch = self._gather_frames()
            if batch:
                self._process(batch)
                if once:
                    seen_once.update(p.camera.id for p, _ in batch)
            if once and self._once_done(seen_once):
                break
            if max_frames is not None and self.counters["frames_analyzed"] >= max_frames:
                break
            if deadline and time.monotonic() >= deadline:
                break
            if self._all_finished():
                log.info("all sources finished")
                break
            self._housekeeping()

    def _once_done(self, seen: set[str]) -> bool:
        pending = [p for p in self.pipelines.values() if p.camera.enabled and p.camera.id not in seen]
        # a camera that cannot deliver (offline) does not block --once forever
        return not [p for p in pending if p.source.health.state in ("connecting", "online")]

    def _all_finished(self) -> bool:
        active = [p for p in self.pipelines.values() if p.camera.enabled]
        return bool(active) and all(p.source.finished for p in active)

    def _gather_frames(self) -> list[tuple[CameraPipeline, Frame]]:
        """Newest frame of every camera that has one; waits briefly on one camera when none has."""
        ready = []
        pipelines = [p for p in self.pipelines.values() if p.camera.enabled]
        for p in self._oldest_first_within_budget(pipelines):
            frame = p.source.read(timeout=0)
            if frame is not None:
                ready.append((p, frame))
                p.last_served = time.monotonic()
        if not ready and pipelines:
            p = pipelines[self.counters["idle_polls"] % len(pipelines)]
            self.counters["idle_polls"] += 1
            frame = p.source.read(timeout=0.02)
            if frame is not None:
                ready.append((p, frame))
        return ready

    def _oldest_first_within_budget(self, pipelines: list[CameraPipeline]) -> list[CameraPipeline]:
        """Cameras with a frame waiting, served longest ago first, as many as fit in ``detector.batch_time_s`` of
        estimated inference (at least one): a frame then waits about one batch, never behind all 16 cameras'."""
        waiting = sorted((p for p in pipelines if getattr(p.source, "has_frame", True)), key=lambda p: p.last_served)
        per_image_ms = self.stats.recent_mean("detect_per_image")
        if per_image_ms is None:
            return waiting[: self.config.detector.max_batch]  # nothing measured yet
        per_image = per_image_ms / 1000
        budget = self.config.detector.batch_time_s
        chosen, cost = [], 0.0
        for p in waiting:
            if self._gate_will_skip(p):
                chosen.append(p)  # the gate will reuse the last detections: no inference to budget for
                continue
            images = _images_per_frame(p)
            if cost and cost + per_image * images > budget + 1e-6:
                continue
            chosen.append(p)
            cost += per_image * images
        return chosen

    @staticmethod
    def _gate_will_skip(p: CameraPipeline) -> bool:
        """The camera's motion gate will skip the detector for the frame waiting now (looked at, not taken).

        Only such frames bypass the batch budget; a gated camera whose zones changed waits its turn like any other.
        """
        if p.gate is None or p.gate_dets is None or not p.camera.motion_gate.enabled:
            return False
        peek = getattr(p.source, "peek", None)
        frame = peek() if peek is not None else None
        return frame is not None and not p.gate.would_detect(frame.image, frame.timestamp)

    def _split_gated(self, batch: list[tuple[CameraPipeline, Frame]]) -> tuple[list, list]:
        """(frames for the detector, frames whose camera's motion gate says nothing changed in its zones)."""
        from edge.motion import MotionGate

        detect, gated = [], []
        for p, frame in batch:
            cfg = p.camera.motion_gate
            if not cfg.enabled:
                p.gate = None
                detect.append((p, frame))
                continue
            if p.gate is None or p.gate.camera is not p.camera:  # first use, or the camera was reconfigured
                p.gate = MotionGate(cfg, p.camera)
            if p.gate_dets is not None and not p.gate.should_detect(frame.image, frame.timestamp):
                gated.append((p, frame))
                self.counters["detector_skipped"] += 1
            else:
                if p.gate_dets is None:
                    p.gate.should_detect(frame.image, frame.timestamp)  # first frame: becomes the reference
                detect.append((p, frame))
        return detect, gated

    def _front_end(self, p: CameraPipeline, dets: Detections | None, size: tuple[int, int]) -> Detections:
        """The per-camera front end; a gated frame (``dets`` None) gets the last analysed frame's output again."""
        if dets is None and p.gate_dets is not None:
            d = p.gate_dets
            return Detections(d.xyxy.copy(), d.scores.copy(), d.class_ids.copy(), d.class_names.copy())
        dets = p.front_end.process(dets if dets is not None else Detections.empty(), size)
        if p.camera.motion_gate.enabled:
            p.gate_dets = Detections(dets.xyxy.copy(), dets.scores.copy(), dets.class_ids.copy(),
                                     dets.class_names.copy())
        return dets

    def _process(self, batch: list[tuple[CameraPipeline, Frame]]) -> None:
        batch, gated = self._split_gated(batch)
        for p, frame in gated:
            self._process_camera(p, frame, None)
        if not batch:
            return
        images = [f.image for _, f in batch]
        for _, f in batch:
            if f.decode_cpu_ms:
                self.stats.add("decode", f.decode_cpu_ms)
        t0 = time.perf_counter()
        detections = self.detector.detect_batch(
            images, [p.tiling for p, _ in batch], [p.camera.class_map for p, _ in batch]
        )
        t1 = time.perf_counter()
        self.stats.add("detect_total", (t1 - t0) * 1000)
        n_images = sum(_images_per_frame(p) for p, _ in batch)
        self.stats.add("detect_per_image", (t1 - t0) * 1000 / n_images)
        for stage, ms in getattr(self.detector, "last_timings", {}).items():
            self.stats.add(stage, ms / len(batch))
        for (p, frame), dets in zip(batch, detections, strict=True):
            self._process_camera(p, frame, dets)

    def _process_camera(self, p: CameraPipeline, frame: Frame, dets: Detections | None) -> None:
        """``dets`` None: the motion gate skipped the detector for this frame (see ``_front_end``)."""
        h, w = frame.image.shape[:2]
        p.last_frame_size = (w, h)
        t0 = time.perf_counter()
        dets = self._front_end(p, dets, (w, h))
        tracked = p.tracker.update(dets, frame.timestamp)
        t1 = time.perf_counter()
        out = p.engine.update(tracked, frame.timestamp, (w, h), Scene(frame.image, p.front_end.sizes))
        t2 = time.perf_counter()
        self.stats.add("tracking", (t1 - t0) * 1000)
        self.stats.add("rules", (t2 - t1) * 1000)
        p.frames_analyzed += 1
        p.last_analysed_at = time.time()
        p.analysed_meter.tick(time.monotonic())
        self.counters["frames_analyzed"] += 1
        p.last_counts = Counter(str(n) for n in tracked.class_names)
        if self.live_frames is not None:
            self.live_frames.offer(p.camera.id, frame.image, frame.captured_monotonic)  # before any drawing

        for event in out.events:
            self.counters[f"incident_{event.event}"] += 1
            if event.event == "opened":
                p.incidents_opened += 1
            self._queue_event(p, frame, event)
        if self.publisher is not None:
            for figure in out.crowd:
                self.publisher.publish_crowd(_as_dict(figure))
            if out.occupancy and hasattr(self.publisher, "publish_occupancy"):
                for occ in out.occupancy:
                    self.publisher.publish_occupancy(_as_dict(occ))

        if self.print_detections:
            summary = ", ".join(f"{n}×{c}" for n, c in sorted(p.last_counts.items())) or "nothing"
            ids = sorted({int(t) for t in tracked.track_ids if t >= 0})
            dropped = ", ".join(f"{k}×{v}" for k, v in sorted(p.front_end.last_drops.items()))
            print(f"[{p.camera.id}] t={frame.pts:7.2f}s  {summary}  tracks={ids}"
                  + (f"  dropped: {dropped}" if dropped else ""), flush=True)

        every = self.config.snapshots.annotated_every_s
        if every and frame.timestamp - p.last_annotated_at >= every:
            p.last_annotated_at = frame.timestamp
            self._write_annotated(p, frame, tracked)

    # ------------------------------------------------------------------ evidence + publishing

    def _queue_event(self, p: CameraPipeline, frame: Frame, event: Any) -> None:
        """Events go through one FIFO thread: snapshot rendering never blocks the pipeline, order is kept."""
        image = frame.image if getattr(event, "needs_snapshot", False) else None
        if image is not None and self._evidence.qsize() >= EVIDENCE_QUEUE_MAX:
            self.counters["snapshots_skipped"] += 1
            image = None
        self._evidence.put((p, event, image, frame.captured_monotonic))

    def _evidence_loop(self) -> None:
        from edge.snapshots import render_all

        tz = ZoneInfo(self.config.site.timezone)

        while True:
            item = self._evidence.get()
            if item is None:
                return
            p, event, image, captured = item
            snapshot, extra = None, []
            if image is not None:
                try:
                    snapshot, extra = render_all(image, event, p.camera, self.config.snapshots, tz)
                except Exception:  # evidence is best effort; the event itself must still go out
                    log.exception("camera %s: snapshot rendering failed", p.camera.id)
            payload = event.payload(snapshot, extra)
            if self.on_event_queued is not None:
                self.on_event_queued(payload["event_id"], captured)
            if self.publisher is not None:
                try:
                    self.publisher.publish_incident(payload)  # durable (in the outbox) when this returns
                except Exception:
                    log.exception("camera %s: could not queue incident %s", p.camera.id, event.incident_id)
                    continue
            # Reported only once durable, so "INCIDENT …" in the output means it survives a SIGKILL.
            log.info("camera %s: incident %s %s", p.camera.id, event.event, _describe(payload))
            if self.print_detections:
                print(f"[{p.camera.id}] INCIDENT {event.event}: {_describe(payload)}", flush=True)
            self.stats.add("capture_to_outbox", (time.monotonic() - captured) * 1000)

    def _write_annotated(self, p: CameraPipeline, frame: Frame, tracked: Detections) -> None:
        from edge.annotate import draw_frame

        out_dir = Path(self.config.snapshots.dir) / "annotated"
        out_dir.mkdir(parents=True, exist_ok=True)
        image = draw_frame(frame.image, tracked, p.camera.zones)
        cv2.imwrite(str(out_dir / f"{p.camera.id}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 80])

    # ------------------------------------------------------------------ health, heartbeat, hot reload

    def health(self) -> list[dict]:
        rows = []
        for p in self.pipelines.values():
            row = p.source.health.to_dict()
            loc = p.camera.location
            row.update(
                name=p.camera.display_name,
                grid_cell=loc.grid_cell,
                address=loc.address,
                lat=loc.lat,
                lon=loc.lon,
                frames_analyzed=p.frames_analyzed,
                incidents_opened=p.incidents_opened,
                open_incidents=p.engine.open_incident_count(),
                zones=[z.name for z in p.camera.zones],
                # asked vs done: the configured detect rate, what the detector analysed (last minute), and the
                # decode rate (input_fps is the decode rate, kept under its old name too)
                detect_fps=p.camera.detect_fps if p.camera.enabled else 0.0,
                analysed_fps=round(p.analysed_meter.rate(time.monotonic()), 3),
                decode_fps=row.get("input_fps"),
                last_analysed_at=p.last_analysed_at,
            )
            rows.append(row)
        return rows

    def _housekeeping(self) -> None:
        now = time.monotonic()
        self.last_loop_at = now  # the health endpoint's liveness: the pipeline loop is turning
        if now - self._last_health_log >= self.config.health.interval_s:
            self._last_health_log = now
            for row in self.health():
                log.info(
                    "health %s: %s in=%.1ffps analysed=%d reconnects=%d%s",
                    row["camera_id"], row["state"], row.get("input_fps") or 0.0, row["frames_analyzed"],
                    row.get("reconnects", 0), f" error={row['last_error']}" if row.get("last_error") else "",
                )
        mqtt = self.config.mqtt
        if self.publisher is not None and mqtt is not None and now - self._last_heartbeat >= mqtt.heartbeat_s:
            self._last_heartbeat = now
            counters = {k: v for k, v in self.counters.items() if k != "idle_polls"}
            counters["uptime_s"] = round(time.time() - self._started_at, 1)
            self.publisher.publish_heartbeat(self.health(), counters)
        if self.config_path and now - self._last_reload_check >= self.reload_interval_s:
            self._last_reload_check = now
            self.maybe_reload()

    def _mtime(self) -> float | None:
        try:
            return self.config_path.stat().st_mtime if self.config_path else None
        except OSError:
            return None

    def maybe_reload(self) -> bool:
        """Apply an edited cameras.yaml. Invalid edits are logged and the running config stays. Returns applied?"""
        mtime = self._mtime()
        if mtime is None or mtime == self._config_mtime:
            return False
        self._config_mtime = mtime
        try:
            new = load_config(self.config_path)
        except ConfigError as e:
            log.error("config reload rejected, keeping the running configuration:\n%s", e)
            self.counters["reloads_rejected"] += 1
            return False
        self.apply_config(new)
        self.counters["reloads_applied"] += 1
        return True

    def apply_config(self, new: EdgeConfig) -> None:
        """Swap zones/rules in place; restart only cameras whose stream settings changed."""
        if new.detector != self.config.detector or new.edge_id != self.config.edge_id or new.mqtt != self.config.mqtt:
            log.warning("config reload: detector/edge_id/mqtt changes need a restart; applying camera changes only")
        old_by_id = {c.id: c for c in self.config.cameras}
        new_by_id = {c.id: c for c in new.cameras}
        for cam_id in old_by_id.keys() - new_by_id.keys():
            log.info("config reload: camera %s removed", cam_id)
            self._remove_camera(cam_id, reason="camera_removed")
        for cam_id, cam in new_by_id.items():
            old = old_by_id.get(cam_id)
            if old is None:
                log.info("config reload: camera %s added", cam_id)
                self._add_camera(cam)
            elif _stream_settings(old) != _stream_settings(cam):
                log.info("config reload: camera %s stream settings changed, reopening", cam_id)
                self._remove_camera(cam_id, reason="reconfigured")
                self._add_camera(cam)
            else:
                p = self.pipelines[cam_id]
                p.camera = cam
                p.tiling = (cam.tiling or self.config.detector.tiling).with_zone_windows(cam.zones)
                p.engine.reconfigure(cam)
                log.info("config reload: camera %s zones/rules updated (%d zones)", cam_id, len(cam.zones))
        self.config = new.model_copy(update={"detector": self.config.detector})


def _images_per_frame(p: CameraPipeline) -> int:
    """Forward-pass images one frame of this camera costs: its tiles and windows (+ the full frame)."""
    width, height = p.last_frame_size or (1920, 1080)
    return len(windows_for_size(width, height, p.tiling))


def _stream_settings(cam: CameraConfig) -> dict:
    return cam.model_dump(exclude={"name", "location", "zones"})


def _as_dict(obj: Any) -> dict:
    if isinstance(obj, dict):
        return obj
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    from dataclasses import asdict

    return asdict(obj)


def _describe(payload: dict) -> str:
    zone = payload.get("zone", {}).get("name")
    subject = payload.get("subject") or {}
    crowd = payload.get("crowd") or {}
    extra = f"{subject.get('class')} tracks={subject.get('track_ids')}" if subject else f"level={crowd.get('level')}"
    return f"{payload['type']} in {zone} dwell={payload.get('dwell_s', 0):.0f}s {extra} id={payload['incident_id'][:8]}"

