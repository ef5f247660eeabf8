"""Manual field reports: an inspector reports a case from a phone (catalogue category, photo, location, note) and the
same loop follows as for a camera incident — routed, deadlines set, auto-filed / dispatched by the category's rules.

The category is a catalogue entry code (the case gets the camera category the entry maps to, so the SLA is that
category's; the entry's code and name go into the title and the audit note) or a configured category code. The grid
cell is the one given, else the one whose boundary contains the reported position. The photo is decoded and
re-encoded like any upload (no EXIF / GPS) and becomes the case's ``before`` evidence.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from central.catalogue import load_catalogue
from central.clock import Clock
from central.config import CentralConfig
from central.db import Case, CaseAudit, CaseEvidence
from central.event_outbox import record_many
from central.grid import load_grid
from central.routing import route
from central.sla import Sla
from central.store import EvidenceStore
from central.workflow import apply_action, case_summary, enter_state, public_id_for

REPORT_CAMERA = None  # manual reports have no camera


class ReportError(ValueError):
    """The report is not acceptable (HTTP 422); ``field`` names the form field."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass
class Report:
    category: str
    note: str | None = None
    lat: float | None = None
    lon: float | None = None
    grid_cell: str | None = None
    address: str | None = None
    photo: bytes | None = None  # already sanitised JPEG
    photo_type: str = "image/jpeg"


def report_categories(session: Session, config: CentralConfig) -> list[dict[str, Any]]:
    """What the report form offers: catalogue entries that map to a camera category, then bare categories."""
    cat = load_catalogue(session, config)
    out = [{"code": e["code"], "class": e["class"], "name": e["name"], "name_zh": e["name_zh"],
            "category": e["incident_types"][0], "standard": e["standard"]}
           for e in cat.as_list() if e["incident_types"] and config.category(e["incident_types"][0])]
    mapped = {x["category"] for x in out}
    out += [{"code": c.code, "class": None, "name": c.name, "name_zh": c.name_zh, "category": c.code, "standard": None}
            for c in config.categories if c.code not in mapped]
    return out


def create_report(session: Session, config: CentralConfig, clock: Clock, store: EvidenceStore, report: Report,
                  actor: str) -> tuple[Case, list[tuple[str, dict[str, Any]]]]:
    """Insert the case and its ``case.created`` event (commits). Returns the case and the events recorded."""
    options = {o["code"]: o for o in report_categories(session, config)}
    opt = options.get(report.category)
    if opt is None:
        raise ReportError("category", f"{report.category[:60]!r} is not a catalogue entry or category to report")
    category = opt["category"]
    cat = config.category(category)
    assert cat is not None
    grid = load_grid(session, config)
    cell = report.grid_cell
    if cell:
        if len(grid) and grid.get(cell) is None:
            raise ReportError("grid_cell", f"{cell[:64]!r} is not a grid cell")
        if grid.get(cell) is not None and grid.get(cell).level != "cell":  # type: ignore[union-attr]
            raise ReportError("grid_cell", f"{cell[:64]!r} is a {grid.get(cell).level}, not a grid cell")  # type: ignore[union-attr]
    elif report.lat is not None and report.lon is not None:
        cell = grid.locate(report.lon, report.lat)
    if not cell and (report.lat is None or report.lon is None):
        raise ReportError("location", "give the position (lat and lon) or a grid cell")
    now = clock.now()
    sla = Sla(config)
    r = route(config, category=category, grid_cell=cell, zone=None, camera_id=REPORT_CAMERA)
    squad = r.squad
    if squad is None and cell and grid.get(cell) is not None:
        squad = grid.get(cell).team  # type: ignore[union-attr]
    entry = f"{opt['code']} " if opt["code"] != category else ""
    title = f"{entry}{opt['name']} — field report"
    case = Case(
        category=category, state="reported", dedup_key=f"report|{uuid.uuid4().hex}", camera_id=None, edge_id=None,
        zone=None, grid_cell=cell, lat=report.lat, lon=report.lon, address=(report.address or None),
        department=r.department, squad=squad, reported_at=now, due_at=sla.due_at(category, now),
        recurrence_count=0, rework_count=0, incident_count=0, title=title[:256],
        description=(report.note or None), updated_at=now,
    )
    enter_state(case, "reported", now, sla)
    session.add(case)
    session.flush()
    case.public_id = public_id_for(case.id, now, config)
    note = f"field report ({opt['code']})" + (f": {report.note}" if report.note else "")
    shas = []
    if report.photo:
        sha = store.put(report.photo, report.photo_type)
        shas.append(sha)
        case.snapshot_sha256 = sha
        session.add(CaseEvidence(case_id=case.id, kind="before", sha256=sha, content_type=report.photo_type,
                                 bytes=len(report.photo), at=now, actor=actor))
    session.add(CaseAudit(case_id=case.id, at=now, actor=actor, action="report", from_state=None,
                          to_state="reported", note=note[:4000], attachments_json=shas or None))
    if cat.auto_file or cat.auto_dispatch:
        apply_action(session, case, "file", "system", now, sla, note="auto-filed (category rule)")
    if cat.auto_dispatch:
        apply_action(session, case, "dispatch", "system", now, sla, note="auto-dispatched (category rule)")
    events: list[tuple[str, dict[str, Any]]] = [("case.created", {**case_summary(case), "source": "field_report"})]
    record_many(session, events)  # committed with the case (central.event_outbox)
    session.commit()
    return case, events
