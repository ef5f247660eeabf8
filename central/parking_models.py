"""Parking occupancy over time (migration 0007_parking_occupancy): one row per figure an edge's parking zone
reported (edge/rules/occupancy.py), kept as history for supply and demand per area and hour (central/parking.py).

``central.db`` imports this module at its end so ``Base.metadata`` always includes the table.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Float, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from central.db import Base


class ParkingOccupancy(Base):
    """Append-only. The key is the figure's own (camera, zone, end of interval): the same figure twice is stored
    once."""

    __tablename__ = "parking_occupancy"
    camera_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    zone: Mapped[str] = mapped_column(String(128), primary_key=True)
    at: Mapped[datetime] = mapped_column(primary_key=True)  # end of the reporting interval
    hour: Mapped[datetime]  # the UTC hour the middle of the interval falls in (what the analytics group by)
    edge_id: Mapped[str] = mapped_column(String(128))
    grid_cell: Mapped[str | None] = mapped_column(String(64))  # the zone's cell, else the camera's
    capacity: Mapped[int] = mapped_column(Integer)
    occupied: Mapped[int] = mapped_column(Integer)  # at the end of the interval
    occupied_mean: Mapped[float] = mapped_column(Float)  # over the interval (= occupied when not reported)
    vehicles: Mapped[int | None] = mapped_column(Integer)
    samples: Mapped[int | None] = mapped_column(Integer)
    period_s: Mapped[float | None] = mapped_column(Float)
    method: Mapped[str | None] = mapped_column(String(16))  # count | bays
    received_at: Mapped[datetime]

    __table_args__ = (
        Index("ix_parking_occupancy_hour", "hour"),
        Index("ix_parking_occupancy_grid_cell_hour", "grid_cell", "hour"),
    )
