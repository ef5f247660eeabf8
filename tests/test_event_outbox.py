"""The case-event outbox on SQLite and PostgreSQL: written with the case change or not at all, ids in commit order
(PostgreSQL's advisory lock), the relay puts rows on the bus with their ids, retention prunes only what no webhook
still owes, and ids are never reused after a prune."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from central.config import CentralConfigError, WebhookConfig, parse_central_config
from central.db import OutboxEvent, WebhookDelivery, make_engine, make_session_factory
from central.event_outbox import last_id, prune, read_after, record
from central.event_relay import EventRelay
from central.events import EventBus
from central.webhooks import WebhookDispatcher
from central.workflow import IllegalTransition
from tests.central_support import incident_payload, make_central


def outbox(sf) -> list[tuple[int, str, int | None]]:  # type: ignore[no-untyped-def]
    with sf() as s:
        return [(r.id, r.kind, r.case_id) for r in read_after(s, 0, 10_000)]


def test_case_events_are_committed_with_the_change_or_not_at_all(db_url: str, tmp_path: Path) -> None:
    c = make_central(db_url, tmp_path)
    res = c.send(incident_payload(type="street_vending"))
    assert [(k, cid) for _, k, cid in outbox(c.session_factory)] == [("case.created", res.case_id)]
    again = c.send(incident_payload(type="street_vending"))  # the same zone: appended to the open case
    assert again.case_id == res.case_id
    svc = c.cases()
    svc.transition(res.case_id, "file", "ops#1")
    with pytest.raises(IllegalTransition):
        svc.transition(res.case_id, "verify_pass", "ops#1")  # refused: rolled back, so no event either
    svc.add_note(res.case_id, "ops#1", "checked on site")
    rows = outbox(c.session_factory)
    assert [k for _, k, _ in rows] == ["case.created", "case.updated", "case.updated", "case.updated"]
    assert [i for i, _, _ in rows] == sorted(i for i, _, _ in rows)
    actions = [d.get("action") for k, d in c.events if k == "case.updated"]
    assert actions == ["incident_appended", "file", "note"]
    # a transaction that records and then rolls back leaves nothing behind
    with c.session_factory() as s:
        record(s, "case.updated", {"id": res.case_id})
        s.rollback()
    assert len(outbox(c.session_factory)) == 4
    # live kinds are not durable: record() skips them
    with c.session_factory() as s:
        assert record(s, "edge.status", {"edge_id": "e"}) == 0
    c.session_factory.kw["bind"].dispose()


def test_postgresql_ids_are_drawn_in_commit_order(postgres_server: str) -> None:
    """Two writers: the first draws its id and holds its transaction open; the second must wait for it, so a
    reader can never see the second's (higher) id committed while the first's is still to come."""
    from tests.fixtures.postgres import _reset_postgres

    _reset_postgres(postgres_server)
    from central.db import upgrade

    upgrade(postgres_server)
    sf = make_session_factory(make_engine(postgres_server))
    first_recorded = threading.Event()
    seen_by_second: list[list[int]] = []

    def first() -> None:
        with sf() as s:
            record(s, "case.updated", {"id": 1})
            s.flush()
            first_recorded.set()
            time.sleep(1.0)  # a slow commit
            s.commit()

    def second() -> None:
        first_recorded.wait(10)
        with sf() as s:
            record(s, "case.updated", {"id": 2})  # blocks on the outbox lock until the first commits
            s.commit()
        with sf() as s:
            seen_by_second.append([r.id for r in read_after(s, 0)])

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    (ids,) = seen_by_second
    assert len(ids) == 2 and ids == sorted(ids)  # the first's row is there, and has the lower id
    sf.kw["bind"].dispose()


def test_relay_puts_rows_on_the_bus_with_their_ids(db_url: str, tmp_path: Path) -> None:
    c = make_central(db_url, tmp_path)
    c.send(incident_payload(type="street_vending"))  # before the relay starts: not live any more
    bus = EventBus()
    got: list[tuple[str, int | None]] = []
    relay = EventRelay(c.session_factory, c.config, bus)
    relay.start()
    relay.stop()
    bus.subscribe(lambda kind, data: got.append((kind, data.get("id"))))
    first = c.send(incident_payload(type="street_vending", zone="z2"))
    second = c.send(incident_payload(type="street_vending", zone="z3"))
    assert relay.pump() == 2
    assert got == [("case.created", first.case_id), ("case.created", second.case_id)]
    assert relay.last_id == outbox(c.session_factory)[-1][0] and relay.pump() == 0
    c.session_factory.kw["bind"].dispose()


def test_retention_prunes_only_what_no_webhook_owes(db_url: str, tmp_path: Path) -> None:
    sf = make_session_factory(make_engine(db_url))
    hook = WebhookConfig(url="http://127.0.0.1:9/hook")
    d = WebhookDispatcher(sf, [hook])
    d.schedule(hook)  # the webhook's cursor starts here
    for i in range(4):
        with sf() as s:
            record(s, "case.created", {"id": i})
            s.commit()
    assert d.schedule(hook) == 4
    ids = [i for i, _, _ in outbox(sf)]
    old = datetime.now(UTC) - timedelta(days=30)
    with sf() as s:  # all four are old; the first two were delivered, the third failed, the fourth is pending
        s.execute(update(OutboxEvent).values(created_at=old))
        for eid, status in zip(ids, ("delivered", "delivered", "failed"), strict=False):
            s.execute(update(WebhookDelivery).where(WebhookDelivery.event_id == eid).values(status=status))
        s.commit()
    with sf() as s:
        record(s, "case.updated", {"id": 9})  # recent: kept
        s.commit()
    cutoff = datetime.now(UTC) - timedelta(days=7)
    with sf() as s:
        assert prune(s, cutoff, [hook.key]) == 3
    assert [i for i, _, _ in outbox(sf)] == [ids[3], ids[3] + 1]
    with sf() as s:
        assert [r.event_id for r in s.scalars(select(WebhookDelivery))] == [ids[3]]  # their records went too
    # a webhook no longer configured does not hold events back
    with sf() as s:
        assert prune(s, cutoff, []) == 1
        assert s.scalar(select(func.count()).select_from(WebhookDelivery)) == 0
    # pruning everything never lets an id come back
    with sf() as s:
        s.execute(update(OutboxEvent).values(created_at=old))
        s.commit()
    with sf() as s:
        assert prune(s, cutoff, []) == 1 and last_id(s) == 0
        record(s, "case.updated", {"id": 10})
        s.commit()
        assert last_id(s) > ids[3] + 1
    sf.kw["bind"].dispose()


def test_webhook_and_events_config_errors_name_the_key() -> None:
    with pytest.raises(CentralConfigError, match=r"webhooks\[0\].events"):
        parse_central_config({"webhooks": [{"url": "http://x/h", "events": ["crowd.figure"]}]})
    with pytest.raises(CentralConfigError, match="same url or name"):
        parse_central_config({"webhooks": [{"url": "http://x/h"}, {"url": "http://x/h"}]})
    with pytest.raises(CentralConfigError, match=r"events.retention_days"):
        parse_central_config({"events": {"retention_days": 0}})
    cfg = parse_central_config({"webhooks": [{"url": "http://x/h", "name": "ops-bridge"}, {"url": "http://x/h2"}]})
    assert cfg.webhooks[0].key == "ops-bridge" and cfg.webhooks[1].key.startswith("url-")
