"""The command-center imports (grid units, catalogue entries) share reading the file and the all-or-nothing CLI
commit: an unreadable file is an error naming it, and a failing file in a multi-file grid import leaves the database
as it was, with the files before it not kept either."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from central import catalogue, grid
from central.cli import main as central_main
from central.command_models import GridUnit
from central.config import parse_central_config
from central.db import make_engine, make_session_factory

UNITS = (
    "level,code,name,parent\ndistrict,X1,Xd,\nstreet,X1-1,Xs,X1\ncommunity,X1-1-1,Xc,X1-1\ncell,X1-1-1-1,Xg,X1-1-1\n"
)


def _units(url: str) -> int:
    engine = make_engine(url)
    with make_session_factory(engine)() as s:
        n = s.scalar(select(func.count()).select_from(GridUnit))
    engine.dispose()
    return int(n or 0)


@pytest.mark.parametrize(("module", "error"), [(grid, grid.GridError), (catalogue, catalogue.CatalogueError)])
def test_an_unreadable_import_file_is_an_error_naming_it(
    sqlite_url: str, tmp_path: Path, module: object, error: type[Exception]
) -> None:
    cfg = parse_central_config({"database_url": sqlite_url})
    missing = tmp_path / "nope.csv"
    engine = make_engine(sqlite_url)
    with make_session_factory(engine)() as s, pytest.raises(error, match=r"nope\.csv: cannot read \(No such file"):
        module.import_file(s, cfg, missing, datetime.now(UTC))  # type: ignore[attr-defined]
    engine.dispose()


def test_grid_import_cli_keeps_nothing_when_a_later_file_fails(
    sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "u.csv"
    good.write_text(UNITS, encoding="utf-8")
    rc = central_main(["grid", "import", str(good), str(tmp_path / "missing.csv"), "--database-url", sqlite_url])
    err = capsys.readouterr().err
    assert rc == 2 and "missing.csv: cannot read" in err and "(nothing was imported)" in err
    assert _units(sqlite_url) == 0
    assert central_main(["grid", "import", str(good), "--database-url", sqlite_url]) == 0
    assert "grid: 4 units created, 0 updated" in capsys.readouterr().out
    assert _units(sqlite_url) == 4


def test_catalogue_import_cli_reports_an_unreadable_file(
    sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = central_main(["catalogue", "import", str(tmp_path / "std.csv"), "--database-url", sqlite_url])
    err = capsys.readouterr().err
    assert rc == 2 and "std.csv: cannot read" in err and "(nothing was imported)" in err
