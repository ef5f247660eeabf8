"""Config, migrations, evidence store, tokens, routing, silences and the CLI."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, select, text

from central.config import CentralConfigError, load_central_config, parse_central_config
from central.db import ApiToken, Base, Case, make_engine, make_session_factory, upgrade
from central.files import atomic_write
from central.routing import route
from central.silences import SilenceError, create_silence, matching_silence
from central.store import EvidenceError, EvidenceNotFound, FileEvidenceStore
from central.tokens import create_token, revoke_token, verify_token
from tests.central_support import T0, TINY_JPEG, incident_payload, make_central

ROOT = Path(__file__).resolve().parents[1]


def test_example_config_loads_and_errors_name_the_key(tmp_path: Path) -> None:
    cfg = load_central_config(ROOT / "central.yaml")
    assert {c.code for c in cfg.categories} == {"illegal_parking", "street_vending", "crowd_density"}
    assert cfg.category("illegal_parking").limits.handle == 3
    bad = tmp_path / "central.yaml"
    bad.write_text("mqtt:\n  port: 99999\ncategories:\n  - {code: x1, name: X, limits: {handle: -1}}\nbogus: 1\n")
    with pytest.raises(CentralConfigError) as e:
        load_central_config(bad)
    msg = str(e.value)
    assert str(bad) in msg and "mqtt.port" in msg and "categories[0].limits.handle" in msg and "bogus" in msg
    with pytest.raises(CentralConfigError, match="cannot read"):
        load_central_config(tmp_path / "missing.yaml")
    with pytest.raises(CentralConfigError, match="shared_group"):
        parse_central_config({"mqtt": {"shared_group": "a/b"}})
    shared = parse_central_config({"mqtt": {"shared_group": "g1"}})
    assert shared.mqtt.incident_topic() == "$share/g1/gridwatch/v1/+/incidents"
    assert "gridwatch/v1/+/status" in shared.mqtt.topics()  # retained status is not shared


def test_migrations_match_the_models(db_url: str) -> None:
    engine = make_engine(db_url)
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
        cols = {i["name"] for i in inspect(conn).get_indexes("cases")}
        assert {"ix_cases_state_id", "ix_cases_category_id", "ix_cases_grid_cell_id", "ix_cases_due_at"} <= cols
        if engine.dialect.name == "sqlite":
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    upgrade(db_url)  # idempotent
    engine.dispose()


def test_evidence_store(tmp_path: Path) -> None:
    store = FileEvidenceStore(tmp_path / "ev", max_bytes=1000)
    sha = store.put(TINY_JPEG, "image/jpeg")
    assert sha == hashlib.sha256(TINY_JPEG).hexdigest()
    assert store.path(sha) == tmp_path / "ev" / sha[:2] / sha[2:4] / sha
    assert store.open(sha) == TINY_JPEG and store.content_type(sha) == "image/jpeg"
    assert store.put(TINY_JPEG, "image/jpeg") == sha  # idempotent
    for bad in ("../../etc/passwd", "A" * 64, sha[:-1], sha + "0", "", "../" + sha[3:]):
        with pytest.raises(EvidenceError):
            store.path(bad)
    with pytest.raises(EvidenceError, match="limit"):
        store.put(b"x" * 1001, "image/jpeg")
    with pytest.raises(EvidenceError, match="content type"):
        store.put(b"<script>", "text/html")
    with pytest.raises(EvidenceError, match="mismatch"):
        store.put(TINY_JPEG, "image/jpeg", expected_sha256="0" * 64)
    with pytest.raises(EvidenceNotFound):
        store.open("f" * 64)


def test_atomic_write_replaces_whole_or_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "frame.jpg"
    atomic_write(target, b"old")
    atomic_write(target, b"new")
    assert target.read_bytes() == b"new"
    with pytest.raises(TypeError):
        atomic_write(target, "not bytes")  # type: ignore[arg-type]  # fails after the temporary file exists
    assert target.read_bytes() == b"new" and sorted(p.name for p in tmp_path.iterdir()) == ["frame.jpg"]


def test_tokens_are_hashed_and_revocable(db_url: str) -> None:
    engine = make_engine(db_url)
    with make_session_factory(engine)() as s:
        plain, row = create_token(s, "ops desk", "dispatcher", now=T0)
        s.commit()
        stored = s.scalars(select(ApiToken)).one()
        assert (
            plain not in (stored.token_hash, stored.prefix)
            and stored.token_hash == hashlib.sha256(plain.encode()).hexdigest()
        )
        assert verify_token(s, plain, now=T0 + timedelta(minutes=1)).role == "dispatcher"
        assert stored.last_used_at == T0 + timedelta(minutes=1)
        assert verify_token(s, plain + "x") is None and verify_token(s, "") is None
        assert revoke_token(s, row.id, now=T0)
        assert verify_token(s, plain) is None
        with pytest.raises(ValueError, match="role"):
            create_token(s, "x", "root")
    engine.dispose()


def test_routing_rules() -> None:
    cfg = parse_central_config(
        {
            "routing": [
                {"grid_cell_prefix": "440305-001", "category": "illegal_parking", "squad": "traffic-1"},
                {"zone": "night-market", "squad": "night", "department": "market_office"},
                {"grid_cell_prefix": "440305", "squad": "grid"},
            ]
        }
    )
    assert (
        route(cfg, category="illegal_parking", grid_cell="440305-001-07", zone="z", camera_id="c").squad == "traffic-1"
    )
    r = route(cfg, category="street_vending", grid_cell="440305-001-07", zone="night-market", camera_id="c")
    assert (r.department, r.squad, r.rule_index) == ("market_office", "night", 1)
    r = route(cfg, category="street_vending", grid_cell="440305-002", zone="z", camera_id="c")
    assert (r.department, r.squad) == ("urban_management", "grid")  # department falls back to the category's
    r = route(cfg, category="crowd_density", grid_cell=None, zone="z", camera_id="c")
    assert (r.department, r.squad, r.rule_index) == ("public_security", None, None)
    with pytest.raises(CentralConfigError, match="not a configured category"):
        parse_central_config({"routing": [{"category": "nope", "squad": "x"}]})


def test_routing_applies_to_new_cases(db_url: str, tmp_path: Path) -> None:
    c = make_central(db_url, tmp_path, {"routing": [{"grid_cell_prefix": "440305-001", "squad": "nanshan-1"}]})
    r = c.send(incident_payload())
    with c.session_factory() as s:
        case = s.get(Case, r.case_id)
        assert (case.department, case.squad) == ("traffic_police", "nanshan-1")
    c.session_factory.kw["bind"].dispose()


def test_silence_rules(db_url: str) -> None:
    engine = make_engine(db_url)
    with make_session_factory(engine)() as s:
        with pytest.raises(SilenceError):
            create_silence(s, category="street_vending", starts_at=T0, ends_at=T0, now=T0, zone="z")
        with pytest.raises(SilenceError, match="city-wide"):
            create_silence(s, category="street_vending", starts_at=T0, ends_at=T0 + timedelta(hours=1), now=T0)
        create_silence(
            s, category="street_vending", grid_cell="440305-001", starts_at=T0, ends_at=T0 + timedelta(hours=1), now=T0
        )
        kw = {"category": "street_vending", "camera_id": "c", "zone": "z"}
        assert matching_silence(s, **kw, grid_cell="440305-001-07", at=T0) is not None
        assert matching_silence(s, **kw, grid_cell="440305-002-07", at=T0) is None
        assert matching_silence(s, **kw, grid_cell="440305-001-07", at=T0 + timedelta(hours=1)) is None  # end excl.
        assert matching_silence(s, **{**kw, "category": "illegal_parking"}, grid_cell="440305-001", at=T0) is None
    engine.dispose()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "central.cli", *args], capture_output=True, text=True, cwd=ROOT, timeout=60
    )


def test_cli_migrate_token_kpis_hotspots(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    r = _cli("migrate", "--database-url", url)
    assert r.returncode == 0, r.stderr
    r = _cli("create-token", "desk", "--role", "admin", "--database-url", url)
    assert r.returncode == 0 and r.stdout.strip().startswith("gwc_"), r.stderr
    c = make_central(url, tmp_path)
    c.clock.set(T0)
    c.send(incident_payload(at=T0))
    c.session_factory.kw["bind"].dispose()
    since = (T0 - timedelta(days=1)).isoformat()
    until = (T0 + timedelta(days=1)).isoformat()
    r = _cli("kpis", "--since", since, "--until", until, "--database-url", url)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[1].split()[:4] == ["group", "incidents", "filed", "due"]
    assert lines[3].split()[:3] == ["all", "1", "1"]
    r = _cli("kpis", "--since", since, "--until", until, "--group-by", "camera", "--database-url", url)
    assert r.returncode == 0 and "cam-1" in r.stdout
    r = _cli("hotspots", "--since", since, "--until", until, "--database-url", url)
    assert r.returncode == 0 and "north-curb" in r.stdout and "09:00" in r.stdout  # started 09:59 Shanghai
    r = _cli("kpis", "--since", "yesterday-ish", "--database-url", url)
    assert r.returncode == 2 and "neither a duration" in r.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("nope: 1\n")
    r = _cli("migrate", "--config", str(bad))
    assert r.returncode == 2 and "bad.yaml" in r.stderr and "nope" in r.stderr
    r = _cli("create-token", "--name", "ops-desk", "--role", "dispatcher", "--database-url", url)  # README's form
    assert r.returncode == 0 and r.stdout.strip().startswith("gwc_"), r.stderr
    # relative paths in central.yaml are relative to the file; an unmigrated database says what to do
    conf_dir = tmp_path / "conf"
    conf_dir.mkdir()
    (conf_dir / "central.yaml").write_text("database_url: sqlite:///data/fresh.db\nevidence_dir: data/evidence\n")
    r = _cli("kpis", "--config", str(conf_dir / "central.yaml"))
    assert r.returncode == 2 and "run `gridwatch-central migrate" in r.stderr and "Traceback" not in r.stderr
    assert _cli("migrate", "--config", str(conf_dir / "central.yaml")).returncode == 0
    assert (conf_dir / "data" / "fresh.db").is_file()


def test_event_bus_threads_and_async_listeners() -> None:
    import asyncio
    import threading

    from central.events import EventBus

    bus = EventBus(queue_size=3)
    seen: list[str] = []
    unsubscribe = bus.subscribe(lambda kind, data: seen.append(kind))
    bus.subscribe(lambda kind, data: 1 / 0)  # a broken listener does not break publishing

    async def main() -> list[tuple[str, dict]]:
        it = bus.listen()
        first = asyncio.ensure_future(it.__anext__())
        await asyncio.sleep(0.05)  # the listener is registered
        t = threading.Thread(target=lambda: [bus.publish("case.updated", {"n": i}) for i in range(6)])
        t.start()
        t.join()
        got = [await first]
        while True:
            try:
                got.append(await asyncio.wait_for(it.__anext__(), 0.2))
            except TimeoutError:
                break
        await it.aclose()
        return got

    got = asyncio.run(main())
    assert seen == ["case.updated"] * 6
    # the six events arrive before the listener runs again: its queue (size 3) keeps the newest three
    assert [d["n"] for _, d in got] == [3, 4, 5]
    unsubscribe()
    bus.publish("case.created", {})
    assert len(seen) == 6
