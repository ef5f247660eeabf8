"""The edges' live frames: the newest clean JPEG per camera, for the zone editor and the cameras page.

Frames arrive retained on ``<prefix>/<edge_id>/cameras/<camera_id>/frame`` (edge.live_frames). They are best effort
and latest-wins, so they bypass the incident ingest's batches and its database transaction:

- ``MqttIngest`` hands each one to ``LiveFrameIngest.submit``, which keeps only the newest per topic until its own
  thread gets to it (a burst of retained frames on connect never queues up);
- ``check_frame`` validates it: topic levels, payload size, JSON, ``central/schemas/frame.v1.json``, ids matching
  the topic, base64, byte count and SHA-256, and a JPEG that really decodes (central.images, bounded size). A
  refused frame becomes a ``dead_letters`` row and a warning that name the camera and the cause;
- ``LiveFrameStore`` keeps it on disk as ``<dir>/<sha256 of the camera id>.jpg`` with a ``.json`` beside it (ids
  never become paths, so no traversal whatever a topic says), written atomically; an empty retained payload (the
  edge removed the camera) deletes it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session, sessionmaker

from central import edge_messages
from central.config import CentralConfig
from central.db import DeadLetter
from central.files import atomic_write
from central.images import ImageRefused, decode_checked
from central.ingest_parse import DeadLetterReason, decode_json

log = logging.getLogger(__name__)

ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # edge.config.ID_PATTERN
DEAD_LETTER_KEEP_BYTES = 4096  # a frame's payload is mostly base64 pixels: keep the head for diagnosis


@dataclass(frozen=True)
class LiveFrame:
    camera_id: str
    edge_id: str
    at: str  # capture time as the edge wrote it (RFC 3339)
    received_at: str
    width: int
    height: int
    bytes: int
    sha256: str
    path: Path

    def meta(self) -> dict[str, Any]:
        return {
            "camera_id": self.camera_id,
            "edge_id": self.edge_id,
            "at": self.at,
            "received_at": self.received_at,
            "width": self.width,
            "height": self.height,
            "bytes": self.bytes,
            "sha256": self.sha256,
        }


def frame_topic_parts(topic: str, prefix: str) -> tuple[str, str] | None:
    """'<prefix>/<edge>/cameras/<camera>/frame' → (edge, camera); None for any other topic."""
    if not topic.startswith(prefix + "/"):
        return None
    rest = topic[len(prefix) + 1 :].split("/")
    if len(rest) != 4 or rest[1] != "cameras" or rest[3] != "frame":
        return None
    return rest[0], rest[2]


def is_frame_topic(topic: str, prefix: str) -> bool:
    return frame_topic_parts(topic, prefix) is not None


def check_frame(topic: str, payload: bytes, config: CentralConfig) -> tuple[dict[str, Any], bytes] | None:
    """``(message, jpeg)`` for a good frame, ``None`` for an empty payload (a cleared retained frame); raises
    ``DeadLetterReason`` whose detail starts with the camera it concerns."""
    parts = frame_topic_parts(topic, config.mqtt.topic_prefix)
    if parts is None:
        raise DeadLetterReason("unknown_topic", f"topic {topic[:200]!r} is not a live frame topic")
    edge_id, camera_id = parts
    if not ID_RE.match(edge_id) or not ID_RE.match(camera_id):
        raise DeadLetterReason("schema", f"frame topic {topic[:200]!r}: edge and camera ids must match "
                                         f"{ID_RE.pattern}")  # fmt: skip
    what = f"frame of camera {camera_id!r} (edge {edge_id!r})"
    if config.mqtt.edges and edge_id not in config.mqtt.edges:
        raise DeadLetterReason("unknown_edge", f"{what}: edge is not in mqtt.edges")
    if not payload:
        return None
    limit = config.live_frames.max_bytes * 4 // 3 + 4096  # base64 of the largest JPEG plus the JSON around it
    if len(payload) > limit:
        raise DeadLetterReason("oversized", f"{what}: {len(payload)} bytes is over the {limit}-byte limit for "
                                            f"live_frames.max_bytes={config.live_frames.max_bytes}")  # fmt: skip
    data = decode_json(payload)
    if isinstance(data, DeadLetterReason):
        raise DeadLetterReason(data.reason, f"{what}: {data.detail}")
    problem = edge_messages.check("frame", edge_id, data)
    if problem:
        raise DeadLetterReason(problem[0], f"{what}: {problem[1]}")
    if data["camera_id"] != camera_id:
        raise DeadLetterReason("topic_mismatch", f"{what}: payload camera_id {data['camera_id']!r} differs from the "
                                                 "topic's")  # fmt: skip
    try:
        jpeg = base64.b64decode(data["data"], validate=True)
    except (binascii.Error, ValueError):
        raise DeadLetterReason("bad_frame", f"{what}: data is not valid base64") from None
    if len(jpeg) > config.live_frames.max_bytes:
        raise DeadLetterReason("bad_frame", f"{what}: {len(jpeg)} bytes is over live_frames.max_bytes="
                                            f"{config.live_frames.max_bytes}")  # fmt: skip
    if len(jpeg) != data["bytes"] or hashlib.sha256(jpeg).hexdigest() != data["sha256"]:
        raise DeadLetterReason("bad_frame", f"{what}: data does not match its bytes/sha256")
    try:
        img = decode_checked(jpeg, what, types=("image/jpeg",))
    except ImageRefused as e:
        raise DeadLetterReason("bad_frame", e.message) from None
    h, w = img.shape[:2]
    if (w, h) != (data["width"], data["height"]):
        raise DeadLetterReason("bad_frame", f"{what}: the JPEG is {w}x{h}, the message says "
                                            f"{data['width']}x{data['height']}")  # fmt: skip
    return data, jpeg


class LiveFrameStore:
    """The newest frame per camera under ``root``; file names are hashes of the camera id, never the id."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def _base(self, camera_id: str) -> Path:
        return self.root / hashlib.sha256(camera_id.encode("utf-8")).hexdigest()[:40]

    def put(self, message: dict[str, Any], jpeg: bytes, received_at: datetime | None = None) -> LiveFrame:
        base = self._base(message["camera_id"])
        received = (received_at or datetime.now(UTC)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        frame = LiveFrame(
            message["camera_id"],
            message["edge_id"],
            message["at"],
            received,
            int(message["width"]),
            int(message["height"]),
            len(jpeg),
            message["sha256"],
            base.with_suffix(".jpg"),
        )
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write(base.with_suffix(".jpg"), jpeg)
        atomic_write(base.with_suffix(".json"), json.dumps(frame.meta()).encode())
        return frame

    def get(self, camera_id: str) -> LiveFrame | None:
        base = self._base(camera_id)
        try:
            meta = json.loads(base.with_suffix(".json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        path = base.with_suffix(".jpg")
        if not path.is_file() or meta.get("camera_id") != camera_id:
            return None
        fields = ("edge_id", "at", "received_at", "width", "height", "bytes", "sha256")
        return LiveFrame(camera_id, *(meta.get(k) for k in fields), path=path)

    def delete(self, camera_id: str) -> bool:
        base = self._base(camera_id)
        found = False
        for suffix in (".json", ".jpg"):
            try:
                base.with_suffix(suffix).unlink()
                found = True
            except FileNotFoundError:
                pass
        return found


class LiveFrameIngest:
    """Validates and stores live frames on its own thread, newest per topic first come; ``start()`` / ``stop()``.

    ``on_dead_letter(reason)`` lets the metrics count refused frames like other dead letters."""

    def __init__(
        self,
        config: CentralConfig,
        store: LiveFrameStore,
        session_factory: sessionmaker[Session] | None,
        on_dead_letter: Any = None,
    ):
        self.config = config
        self.store = store
        self.session_factory = session_factory
        self.on_dead_letter = on_dead_letter
        self._pending: dict[str, bytes] = {}
        self._cond = threading.Condition()
        self._stop = False
        self._thread: threading.Thread | None = None
        self.stats = {"received": 0, "stored": 0, "cleared": 0, "dead_letters": 0, "superseded": 0}

    def submit(self, topic: str, payload: bytes) -> None:
        """From the MQTT network thread: O(1), never blocks on decoding or the disk."""
        with self._cond:
            self.stats["received"] += 1
            if topic in self._pending:
                self.stats["superseded"] += 1
            self._pending[topic] = payload
            self._cond.notify()

    def process(self, topic: str, payload: bytes) -> str:
        """Handle one frame now: 'stored', 'cleared' or 'dead_letter'."""
        try:
            checked = check_frame(topic, payload, self.config)
        except DeadLetterReason as e:
            self._dead_letter(topic, payload, e)
            return "dead_letter"
        if checked is None:
            parts = frame_topic_parts(topic, self.config.mqtt.topic_prefix)
            if parts and self.store.delete(parts[1]):
                log.info("live frame of camera %s cleared by edge %s", parts[1], parts[0])
            self.stats["cleared"] += 1
            return "cleared"
        message, jpeg = checked
        self.store.put(message, jpeg)
        self.stats["stored"] += 1
        return "stored"

    def _dead_letter(self, topic: str, payload: bytes, e: DeadLetterReason) -> None:
        self.stats["dead_letters"] += 1
        log.warning("live frame refused (%s): %s", e.reason, e.detail)
        if self.on_dead_letter is not None:
            self.on_dead_letter(e.reason)
        if self.session_factory is None:
            return
        row = {
            "received_at": datetime.now(UTC),
            "topic": topic[:512],
            "reason": e.reason,
            "detail": e.detail[:2000],
            "size": len(payload),
            "payload": payload[:DEAD_LETTER_KEEP_BYTES],
        }
        try:
            with self.session_factory() as session:
                session.execute(insert(DeadLetter.__table__), [row])
                session.commit()
        except Exception:  # the database is down: the warning above is the record; frames are best effort
            log.exception("live frame dead letter not stored")

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._stop:
                    self._cond.wait(0.5)
                if self._stop and not self._pending:
                    return
                topic = next(iter(self._pending))
                payload = self._pending.pop(topic)
            try:
                self.process(topic, payload)
            except Exception:  # a full disk, say: log and carry on with the next frame
                log.exception("live frame on %s not stored", topic[:200])

    def start(self) -> None:
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="central-live-frames", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout)
