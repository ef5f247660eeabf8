"""What the command-center imports (grid units in central.grid, catalogue entries in central.catalogue) share:
reading the file with a clear error, and upserting rows keyed by ``code`` while counting new and updated ones."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from sqlalchemy.orm import Session

from central.command_models import CatalogueRow, GridUnit

Row = TypeVar("Row", GridUnit, CatalogueRow)


def read_import(path: Path, error: type[ValueError]) -> str:
    """The file's text; ``error`` naming the file and the cause when it cannot be read."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as e:
        raise error(f"{path}: cannot read ({e.strerror})") from None


class Upsert:
    """Rows by code for one import: the stored one when ``existing`` has it, else a new row added to the session."""

    def __init__(self, session: Session, existing: dict[str, Row], model: type[Row]):
        self.session, self.existing, self.model = session, existing, model
        self.created = self.updated = 0

    def row(self, code: str) -> Row:
        row = self.existing.get(code)
        if row is None:
            row = self.model(code=code)
            self.session.add(row)
            self.created += 1
        else:
            self.updated += 1
        return row
