"""Grid hierarchy: central.yaml section, CSV / GeoJSON import, roll-ups, position lookup, list and KPI filters."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from central.command_config import CatalogueConfig, EscalationConfig, GridConfig
from central.config import CentralConfigError, load_central_config, parse_central_config
from central.db import make_engine, make_session_factory, upgrade
from central.grid import GridError, import_file, load_grid, parse_csv, parse_geojson
from tests.central_support import T0
from tests.test_api_support import make_api

ROOT = Path(__file__).resolve().parents[1]


def square(x: float, y: float, d: float = 0.01) -> dict[str, Any]:
    return {"type": "Polygon", "coordinates": [[[x, y], [x + d, y], [x + d, y + d], [x, y + d], [x, y]]]}


# D1 → S1 → C1 (cells A, B), C2 (cell C); S2 → C3 (cell D)
GRID = {"districts": [{"code": "D1", "name": "District", "team": "t-district", "streets": [
    {"code": "S1", "name": "Street 1", "team": "t-street-1", "communities": [
        {"code": "C1", "name": "Community 1", "team": "t-comm-1", "cells": [
            {"code": "440305-001-07", "name": "Cell A", "boundary": square(114.0, 22.5)},
            {"code": "440305-001-08", "name": "Cell B", "boundary": square(114.01, 22.5)}]},
        {"code": "C2", "name": "Community 2", "cells": [{"code": "440305-002-01", "name": "Cell C"}]}]},
    {"code": "S2", "name": "Street 2", "communities": [
        {"code": "C3", "name": "Community 3", "cells": [{"code": "440305-009-01", "name": "Cell D"}]}]}]}]}


def test_example_config_has_a_grid_and_the_models_document_themselves() -> None:
    cfg = load_central_config(ROOT / "central.yaml")
    codes = {u.code for _, u, _ in cfg.grid.walk()}
    cameras_cells = {"310101-001-03", "310101-002-01", "310101-001-07", "310101-003-02"}  # cameras.yaml
    assert cameras_cells <= codes
    assert cfg.escalation.enabled and {e.class_code for e in cfg.catalogue.entries} == {"A", "B", "C"}

    def undocumented(schema: dict[str, Any], where: str) -> list[str]:
        out = []
        for name, d in schema.get("$defs", {}).items():
            out += [f"{where}.{name}.{k}" for k, p in d.get("properties", {}).items() if not p.get("description")]
        out += [f"{where}.{k}" for k, p in schema.get("properties", {}).items() if not p.get("description")]
        return out

    missing = (undocumented(GridConfig.model_json_schema(), "grid")
               + undocumented(EscalationConfig.model_json_schema(), "escalation")
               + undocumented(CatalogueConfig.model_json_schema(by_alias=True), "catalogue"))
    assert missing == []


def test_grid_config_errors_name_the_key(tmp_path: Path) -> None:
    bad = {"districts": [{"code": "D1", "name": "D", "streets": [{"code": "D1", "name": "dup"}]}]}
    with pytest.raises(CentralConfigError, match="appears more than once"):
        parse_central_config({"grid": bad})
    bow_tie = {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}
    with pytest.raises(CentralConfigError, match=r"grid\.districts\[0\]\.boundary"):
        parse_central_config({"grid": {"districts": [{"code": "D1", "name": "D", "boundary": bow_tie}]}})
    with pytest.raises(CentralConfigError, match=r"grid\.districts\[0\]\.code"):
        parse_central_config({"grid": {"districts": [{"code": "bad code!", "name": "D"}]}})


def test_hierarchy_rollups_and_locate() -> None:
    cfg = parse_central_config({"grid": GRID})
    engine = make_engine("sqlite://")
    upgrade(engine)
    with make_session_factory(engine)() as s:
        g = load_grid(s, cfg)
    assert g.ancestors("440305-001-08") == {"district": "D1", "street": "S1", "community": "C1",
                                             "cell": "440305-001-08"}
    assert g.cells_under("S1") == ["440305-001-07", "440305-001-08", "440305-002-01"]
    assert g.cells_under("D1") == [*g.cells_under("S1"), "440305-009-01"]
    assert g.cells_under("nope") == [] and g.ancestors("nope")["district"] is None
    assert g.team_at("440305-001-07", "community") == ("C1", "t-comm-1")
    assert g.team_at("440305-002-01", "community") == ("C2", None)
    assert g.locate(114.005, 22.505) == "440305-001-07"
    assert g.locate(114.015, 22.505) == "440305-001-08"
    assert g.locate(115.0, 22.505) is None
    fc = g.geojson("cell")
    assert [f["properties"]["code"] for f in fc["features"]] == ["440305-001-07", "440305-001-08"]
    assert fc["features"][0]["properties"]["community"] == "C1"
    assert g.problems() == []


def test_csv_and_geojson_import(db_url: str, tmp_path: Path) -> None:
    cfg = parse_central_config({"grid": {"districts": [{"code": "D1", "name": "District"}]}})
    engine = make_engine(db_url)
    sf = make_session_factory(engine)
    csv_text = ("level,code,name,name_zh,parent,team\n"
                "street,S9,Street 9,第九街道,D1,t-s9\n"
                "community,C9,Community 9,,S9,t-c9\n"
                "cell,G1,Cell 1,一号网格,C9,\n"
                "cell,G2,Cell 2,,C9,\n")
    (tmp_path / "units.csv").write_text(csv_text, encoding="utf-8")
    geo = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"code": "G1"}, "geometry": square(120.0, 30.0)},
        {"type": "Feature", "properties": {"code": "G3", "level": "cell", "name": "Cell 3", "parent": "C9"},
         "geometry": square(120.01, 30.0)}]}
    (tmp_path / "cells.geojson").write_text(json.dumps(geo), encoding="utf-8")
    with sf() as s:
        assert import_file(s, cfg, tmp_path / "units.csv", T0) == {"created": 4, "updated": 0, "boundaries": 0}
        assert import_file(s, cfg, tmp_path / "cells.geojson", T0 + timedelta(seconds=1)) == {
            "created": 1, "updated": 1, "boundaries": 2}
        s.commit()
    with sf() as s:
        g = load_grid(s, cfg)
        assert g.cells_under("D1") == ["G1", "G2", "G3"]
        assert g.get("G1").name_zh == "一号网格" and g.get("G1").source == "import"
        assert g.get("D1").source == "config"
        assert g.locate(120.005, 30.005) == "G1" and g.locate(120.015, 30.005) == "G3"
        # a broken file writes nothing: an orphan cell, a unit that central.yaml owns, bad geometry
        for text, msg in (("level,code,name,parent\ncell,G9,Cell 9,C404\n", "parent 'C404' is not a known community"),
                          ("level,code,name,parent\ncommunity,C9,X,D1\n", "parent 'D1' is a district"),
                          ("level,code,name\ndistrict,D1,Again\n", "central.yaml"),
                          ("level,code,name,parent,boundary\ncell,G8,C,C9,{\"type\": \"Point\"}\n", "line 2"),
                          ("code,name\nG1,x\n", "header needs")):
            with pytest.raises(GridError, match=msg):
                from central.grid import import_units

                import_units(s, cfg, parse_csv(text, "t.csv"), T0, "t.csv")
        s.rollback()
        with pytest.raises(GridError, match="FeatureCollection"):
            parse_geojson('{"type": "Feature"}')
    engine.dispose()


def test_cli_grid_import_and_show(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'g.db'}"
    upgrade(db)
    (tmp_path / "u.csv").write_text("level,code,name,parent\ndistrict,X1,Xd,\nstreet,X1-1,Xs,X1\n"
                                    "community,X1-1-1,Xc,X1-1\ncell,X1-1-1-1,Xg,X1-1-1\n", encoding="utf-8")
    run = [sys.executable, "-m", "central.cli"]
    out = subprocess.run([*run, "grid", "import", str(tmp_path / "u.csv"), "--database-url", db],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert "4 units created" in out.stdout
    bad = tmp_path / "bad.csv"
    bad.write_text("level,code,name,parent\ncell,Q1,Q,NOPE\n", encoding="utf-8")
    out = subprocess.run([*run, "grid", "import", str(bad), "--database-url", db], capture_output=True, text=True,
                         cwd=ROOT)
    assert out.returncode == 2 and "nothing was imported" in out.stderr and "NOPE" in out.stderr
    out = subprocess.run([*run, "grid", "show", "--json", "--database-url", db], capture_output=True, text=True,
                         cwd=ROOT)
    tree = json.loads(out.stdout)["districts"]
    assert tree[0]["code"] == "X1" and tree[0]["units"][0]["units"][0]["units"][0]["code"] == "X1-1-1-1"


def test_case_list_and_kpis_filter_and_roll_up_by_level(db_url: str, tmp_path: Path) -> None:
    env = make_api(db_url, tmp_path, {"grid": GRID})
    h = env.auth("viewer")
    a1 = env.new_case(grid_cell="440305-001-07")
    a2 = env.new_case(grid_cell="440305-001-07")
    b = env.new_case(grid_cell="440305-001-08")
    c = env.new_case(grid_cell="440305-002-01")
    d = env.new_case(grid_cell="440305-009-01")

    def ids(**params: Any) -> set[int]:
        r = env.client.get("/api/v1/cases", params=params, headers=h)
        assert r.status_code == 200, r.text
        return {x["id"] for x in r.json()["items"]}

    assert ids(grid_unit="C1") == {a1, a2, b}
    assert ids(grid_unit="S1") == {a1, a2, b, c}
    assert ids(grid_unit="S2") == {d}
    assert len(ids(grid_unit="D1")) == 5
    r = env.client.get("/api/v1/cases", params={"grid_unit": "nope"}, headers=h)
    assert r.status_code == 422 and "query.grid_unit" in r.json()["detail"]

    period = {"since": (T0 - timedelta(days=1)).isoformat(), "until": (T0 + timedelta(days=1)).isoformat()}
    r = env.client.get("/api/v1/kpis", params={**period, "group_by": "street"}, headers=h)
    assert r.status_code == 200, r.text
    incidents = {row["group"]: row["incidents"] for row in r.json()["rows"]}
    assert incidents == {"S1": 4, "S2": 1}
    r = env.client.get("/api/v1/kpis", params={**period, "group_by": "community", "grid_unit": "S1"}, headers=h)
    assert {row["group"]: row["incidents"] for row in r.json()["rows"]} == {"C1": 3, "C2": 1}
    r = env.client.get("/api/v1/kpis", params={**period, "grid_unit": "C2"}, headers=h)
    assert r.json()["rows"][0]["incidents"] == 1

    tree = env.client.get("/api/v1/grid", headers=h).json()
    assert tree["counts"] == {"district": 1, "street": 2, "community": 3, "cell": 4}
    unit = env.client.get("/api/v1/grid/units/C1", headers=h).json()
    assert [a["code"] for a in unit["ancestors"]] == ["D1", "S1"] and unit["cells"] == 2
    assert env.client.get("/api/v1/grid/units/nope", headers=h).status_code == 404
    loc = env.client.get("/api/v1/grid/locate", params={"lat": 22.505, "lon": 114.015}, headers=h).json()
    assert loc["cell"] == "440305-001-08" and loc["ancestors"]["street"] == "S1"
    fc = env.client.get("/api/v1/grid/geojson", headers=h).json()
    assert len(fc["features"]) == 2
