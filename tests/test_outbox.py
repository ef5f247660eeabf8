"""The SQLite outbox on its own: durability settings, order, acks, the full policy, bad payloads."""

from __future__ import annotations

import json
import uuid

import pytest

from edge.mqtt.outbox import Outbox, OutboxError

TOPIC = "gridwatch/v1/edge-t/incidents"


def event(incident_id: str, seq: int, kind: str) -> dict:
    return {"schema": "gridwatch.incident/1", "event_id": str(uuid.uuid4()), "incident_id": incident_id,
            "seq": seq, "event": kind, "type": "illegal_parking"}  # fmt: skip


def test_wal_full_sync_order_and_ack(tmp_path):
    box = Outbox(tmp_path / "o.sqlite", max_events=1000)
    assert box.pragmas() == {"journal_mode": "wal", "synchronous": 2}  # 2 = FULL
    events = [event("inc-a", i, "updated") for i in range(1, 6)]
    seqs = [box.put(e, TOPIC) for e in events]
    assert seqs == sorted(seqs) and box.pending() == 5
    rows = box.next_after(0, 3)
    assert [json.loads(r.payload)["event_id"] for r in rows] == [e["event_id"] for e in events[:3]]
    assert [r.seq for r in box.next_after(rows[-1].seq, 10)] == seqs[3:]
    assert box.ack([seqs[0], seqs[1]]) == 2
    assert box.ack([seqs[0]]) == 0  # acking twice (a duplicate PUBACK path) is harmless
    assert box.pending() == 3
    meta = rows[2].meta()
    assert meta["event_id"] == events[2]["event_id"] and meta["enqueued_at"] > 0 and "payload" not in meta


def test_survives_reopen(tmp_path):
    path = tmp_path / "o.sqlite"
    box = Outbox(path)
    ids = [box.put(event("inc-a", i, "updated"), TOPIC) for i in range(1, 4)]
    box.ack([ids[0]])
    box.close()
    again = Outbox(path)
    assert again.pending() == 2
    assert [r.seq for r in again.next_after(0, 10)] == ids[1:]
    # seq keeps growing after a restart (AUTOINCREMENT), so new events never sort before old ones
    assert again.put(event("inc-a", 4, "closed"), TOPIC) > ids[-1]


def test_full_policy_drops_oldest_updated_first(tmp_path):
    box = Outbox(tmp_path / "o.sqlite", max_events=5)
    opened = box.put(event("inc-a", 1, "opened"), TOPIC)
    upd = [box.put(event("inc-a", i, "updated"), TOPIC) for i in range(2, 5)]
    closed = box.put(event("inc-a", 5, "closed"), TOPIC)
    assert box.pending() == 5 and box.dropped == 0
    box.put(event("inc-b", 1, "opened"), TOPIC)  # full: the oldest 'updated' goes
    remaining = [r.seq for r in box.next_after(0, 100)]
    assert upd[0] not in remaining and opened in remaining and closed in remaining
    assert box.dropped == 1
    box.put(event("inc-b", 2, "updated"), TOPIC)  # drops inc-a updated 3
    box.put(event("inc-b", 3, "updated"), TOPIC)  # drops inc-a updated 4
    assert box.counts_by_kind() == {"opened": 2, "updated": 2, "closed": 1}
    box.put(event("inc-c", 1, "opened"), TOPIC)  # drops inc-b updated 2
    box.put(event("inc-c", 2, "closed"), TOPIC)  # drops inc-b updated 3
    assert box.counts_by_kind() == {"opened": 3, "closed": 2} and box.dropped == 5
    box.put(event("inc-d", 1, "opened"), TOPIC)  # no 'updated' left: the oldest event of any kind goes
    kept = [(json.loads(r.payload)["incident_id"], r.kind) for r in box.next_after(0, 100)]
    assert kept == [("inc-a", "closed"), ("inc-b", "opened"), ("inc-c", "opened"), ("inc-c", "closed"),
                    ("inc-d", "opened")]  # fmt: skip
    assert box.pending() == 5 and box.dropped == 6
    box.close()
    assert Outbox(tmp_path / "o.sqlite", max_events=5).dropped == 6  # the drop count is persisted


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        ({"incident_id": "i", "event": "opened"}, "'event_id'"),
        ({"event_id": "e", "event": "opened"}, "'incident_id'"),
        ({"event_id": "e", "incident_id": "i", "event": ""}, "'event'"),
        ({"event_id": "e", "incident_id": "i", "event": "opened", "dwell_s": float("nan")}, "JSON"),
        ("not a dict", "must be a dict"),
    ],
)
def test_bad_payload_names_the_field(tmp_path, payload, needle):
    box = Outbox(tmp_path / "o.sqlite")
    with pytest.raises(OutboxError, match=needle):
        box.put(payload, TOPIC)
    assert box.pending() == 0


def test_corrupt_file_is_a_clear_error(tmp_path):
    path = tmp_path / "o.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(OutboxError, match="cannot open SQLite database"):
        Outbox(path)
