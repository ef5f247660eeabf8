"""Routing: which department and squad a case goes to. First matching rule wins; else the category's department."""

from __future__ import annotations

from dataclasses import dataclass

from central.config import CentralConfig


@dataclass(frozen=True)
class Route:
    department: str | None
    squad: str | None
    rule_index: int | None  # None when no rule matched


def route(
    config: CentralConfig, *, category: str, grid_cell: str | None, zone: str | None, camera_id: str | None
) -> Route:
    cat = config.category(category)
    fallback = cat.department if cat else None
    for i, rule in enumerate(config.routing):
        if rule.category is not None and rule.category != category:
            continue
        if rule.zone is not None and rule.zone != zone:
            continue
        if rule.camera_id is not None and rule.camera_id != camera_id:
            continue
        if rule.grid_cell_prefix is not None and not (grid_cell or "").startswith(rule.grid_cell_prefix):
            continue
        return Route(rule.department or fallback, rule.squad, i)
    return Route(fallback, None, None)
