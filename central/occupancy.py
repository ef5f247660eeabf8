"""Ingest of parking occupancy figures (``<prefix>/<edge_id>/occupancy``, central/schemas/occupancy.v1.json).

The message has passed its schema before it gets here (central/ingest_parse.py). What the schema cannot say is
checked here and refused as a dead letter naming the field: ``occupied`` or ``occupied_mean`` above ``capacity``,
a ``bays_occupied`` list longer than the capacity, labels with control or format characters, a time that does not
parse. A good figure becomes one ``parking_occupancy`` row; the same figure again (same camera, zone and time) is
recorded once (outcome ``occupancy`` with detail ``duplicate``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from central.ingest_parse import DeadLetterReason, _label, parse_time
from central.parking_models import ParkingOccupancy


def hour_of(at: datetime, period_s: float) -> datetime:
    """The UTC hour (start) the middle of an interval ending at ``at`` falls in."""
    mid = at - timedelta(seconds=period_s / 2)
    return mid.replace(minute=0, second=0, microsecond=0)


def occupancy_row(edge_id: str, p: dict[str, Any], now: datetime) -> ParkingOccupancy:
    """The row for one figure, or ``DeadLetterReason`` (raised) naming what is wrong with it."""
    camera_id = _label(p["camera_id"], "occupancy: camera_id", 128)
    zone = _label(p["zone"], "occupancy: zone", 128)
    grid_cell = _label(p.get("grid_cell"), "occupancy: grid_cell", 64)
    at = parse_time(p["at"], "occupancy: at")
    capacity, occupied = int(p["capacity"]), int(p["occupied"])
    if occupied > capacity:
        raise DeadLetterReason("schema", f"occupancy: occupied {occupied} is more than capacity {capacity}")
    mean = p.get("occupied_mean")
    mean = float(occupied) if mean is None else float(mean)
    if mean > capacity:
        raise DeadLetterReason("schema", f"occupancy: occupied_mean {mean:g} is more than capacity {capacity}")
    bays = p.get("bays_occupied")
    if bays is not None and (len(bays) > capacity or len(set(bays)) != len(bays) or any(b >= capacity for b in bays)):
        raise DeadLetterReason("schema", f"occupancy: bays_occupied must name distinct bays 0..{capacity - 1}")
    period = p.get("period_s") or 0.0
    return ParkingOccupancy(
        camera_id=camera_id,
        zone=zone,
        at=at,
        hour=hour_of(at, float(period)),
        edge_id=edge_id,
        grid_cell=grid_cell,
        capacity=capacity,
        occupied=occupied,
        occupied_mean=mean,
        vehicles=p.get("vehicles"),
        samples=p.get("samples"),
        period_s=p.get("period_s"),
        method=p.get("method"),
        received_at=now,
    )


def store_occupancy(
    session: Session, edge_id: str, p: dict[str, Any], now: datetime, batch: Any
) -> tuple[str, str | None]:
    """Add the figure's row within the ingest batch (``batch``: central.ingest._Batch, which finds rows added earlier
    in the same transaction). Returns (outcome, detail); raises DeadLetterReason for a bad figure."""
    row = occupancy_row(edge_id, p, now)
    key = (row.camera_id, row.zone, row.at)
    if batch.get(session, ParkingOccupancy, key) is not None:
        return "occupancy", "duplicate"
    batch.add(session, ParkingOccupancy, key, row)
    return "occupancy", None
