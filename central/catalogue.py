"""The category standard: a catalogue of matters (class A-D or the site's own, code, Chinese and English names, the
disposal standard, the department, time limits per stage), from central.yaml's ``catalogue`` section merged with
entries imported into ``catalogue_entries`` (central.yaml wins). Camera incident types map to entries through each
entry's ``incident_types``.

CSV import (``gridwatch-central catalogue import FILE.csv``), UTF-8 with a header row; columns (order free):

    class,code,name_zh,name,standard,department,unit,file_h,dispatch_h,handle_h,verify_h,incident_types

``name_en`` is accepted for ``name``; ``incident_types`` is a ``;``-separated list of category codes; ``unit`` is
``working`` (default) or ``calendar``; empty limits mean none. The whole file is validated (each row as a
``CatalogueEntry``, so errors name the line and the field) before anything is written; entries are upserted.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from central.command_config import CatalogueEntry, CatalogueLimits
from central.command_import import Upsert, read_import
from central.command_models import CatalogueRow
from central.config import CentralConfig

STAGE_COLUMNS = {"file": "file_h", "dispatch": "dispatch_h", "handle": "handle_h", "verify": "verify_h"}


class CatalogueError(ValueError):
    pass


def _row_entry(r: CatalogueRow) -> CatalogueEntry:
    return CatalogueEntry.model_validate(
        {
            "code": r.code,
            "class": r.class_code,
            "name": r.name,
            "name_zh": r.name_zh,
            "standard": r.standard,
            "department": r.department,
            "unit": r.unit,
            "limits": {
                "file": r.limit_file,
                "dispatch": r.limit_dispatch,
                "handle": r.limit_handle,
                "verify": r.limit_verify,
            },
            "incident_types": r.incident_types or [],
        }
    )


class Catalogue:
    def __init__(self, entries: dict[str, CatalogueEntry], sources: dict[str, str]):
        self.entries = entries
        self.sources = sources
        self.by_type: dict[str, str] = {}
        for e in sorted(entries.values(), key=lambda x: (sources.get(x.code) != "config", x.code)):
            for t in e.incident_types:
                self.by_type.setdefault(t, e.code)  # config entries first: they win a clash

    def for_type(self, incident_type: str | None) -> CatalogueEntry | None:
        code = self.by_type.get(incident_type or "")
        return self.entries.get(code) if code else None

    def class_of(self, category: str | None) -> str | None:
        e = self.for_type(category)
        return e.class_code if e else None

    def as_list(self) -> list[dict[str, Any]]:
        return [
            entry_json(e, self.sources.get(e.code, "config"))
            for e in sorted(self.entries.values(), key=lambda x: (x.class_code, x.code))
        ]


def entry_json(e: CatalogueEntry, source: str = "config") -> dict[str, Any]:
    return {
        "code": e.code,
        "class": e.class_code,
        "name": e.name,
        "name_zh": e.name_zh,
        "standard": e.standard,
        "department": e.department,
        "unit": e.unit,
        "limits": e.limits.model_dump(),
        "incident_types": list(e.incident_types),
        "source": source,
    }


def load_catalogue(session: Session, config: CentralConfig) -> Catalogue:
    entries: dict[str, CatalogueEntry] = {}
    sources: dict[str, str] = {}
    for r in session.scalars(select(CatalogueRow)):
        entries[r.code] = _row_entry(r)
        sources[r.code] = "import"
    for e in config.catalogue.entries:
        entries[e.code] = e
        sources[e.code] = "config"
    return Catalogue(entries, sources)


def _num(v: str | None) -> float | None:
    v = (v or "").strip()
    return float(v) if v else None


def parse_csv(text: str, source: str = "<csv>") -> list[CatalogueEntry]:
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    header = {h.strip() for h in (reader.fieldnames or [])}
    need = {"class", "code"} - header
    if need or not ({"name", "name_en"} & header):
        raise CatalogueError(f"{source}: the header needs class, code and name (or name_en); it has {sorted(header)}")
    out: list[CatalogueEntry] = []
    seen: set[str] = set()
    for line, raw in enumerate(reader, 2):
        row = {(k or "").strip(): (v or "").strip() for k, v in raw.items()}
        where = f"{source} line {line}"
        try:
            limits = CatalogueLimits(
                **{stage: _num(row.get(col) or row.get(f"limit_{stage}")) for stage, col in STAGE_COLUMNS.items()}
            )
        except (ValueError, ValidationError) as e:
            raise CatalogueError(f"{where}: a time limit is not a positive number ({_first(e)})") from None
        data = {
            "code": row.get("code"),
            "class": row.get("class"),
            "name": row.get("name") or row.get("name_en"),
            "name_zh": row.get("name_zh") or None,
            "standard": row.get("standard") or None,
            "department": row.get("department") or None,
            "unit": row.get("unit") or "working",
            "limits": limits,
            "incident_types": [t.strip() for t in (row.get("incident_types") or "").split(";") if t.strip()],
        }
        try:
            entry = CatalogueEntry.model_validate(data)
        except ValidationError as e:
            raise CatalogueError(f"{where}: {_first(e)}") from None
        if entry.code in seen:
            raise CatalogueError(f"{where}: code {entry.code!r} appears more than once")
        seen.add(entry.code)
        out.append(entry)
    return out


def _first(e: Exception) -> str:
    if isinstance(e, ValidationError):
        err = e.errors()[0]
        loc = ".".join(str(x) for x in err["loc"])
        return f"{loc}: {err['msg']}" if loc else err["msg"]
    return str(e)


def import_entries(
    session: Session, config: CentralConfig, entries: list[CatalogueEntry], now: datetime, source: str = "<import>"
) -> dict[str, int]:
    """Upsert ``entries``; refuses codes defined in central.yaml and incident types mapped twice."""
    cfg_codes = {e.code for e in config.catalogue.entries}
    clash = sorted(e.code for e in entries if e.code in cfg_codes)
    if clash:
        raise CatalogueError(f"{source}: {clash} are defined in central.yaml's catalogue section; change them there")
    existing = {r.code: r for r in session.scalars(select(CatalogueRow))}
    owner: dict[str, str] = {}
    for r in existing.values():
        for t in r.incident_types or []:
            owner[t] = r.code
    for e in config.catalogue.entries:
        for t in e.incident_types:
            owner[t] = e.code
    new_codes = {e.code for e in entries}
    for t, code in list(owner.items()):  # the rows being replaced give up their mappings
        if code in new_codes:
            del owner[t]
    for e in entries:
        for t in e.incident_types:
            if t in owner and owner[t] != e.code:
                raise CatalogueError(f"{source}: incident type {t!r} is already mapped to {owner[t]!r}")
            owner[t] = e.code
    known = {c.code for c in config.categories}
    unknown = sorted({t for e in entries for t in e.incident_types} - known)
    if unknown:
        raise CatalogueError(f"{source}: incident types {unknown} are not configured categories")
    rows = Upsert(session, existing, CatalogueRow)
    for e in entries:
        row = rows.row(e.code)
        row.class_code, row.name, row.name_zh, row.standard = e.class_code, e.name, e.name_zh, e.standard
        row.department, row.unit, row.incident_types, row.updated_at = e.department, e.unit, e.incident_types, now
        row.limit_file, row.limit_dispatch = e.limits.file, e.limits.dispatch
        row.limit_handle, row.limit_verify = e.limits.handle, e.limits.verify
    session.flush()
    return {"created": rows.created, "updated": rows.updated}


def import_file(session: Session, config: CentralConfig, path: str | Path, now: datetime) -> dict[str, int]:
    p = Path(path)
    return import_entries(session, config, parse_csv(read_import(p, CatalogueError), str(p)), now, str(p))
