"""Automatic findings: an on-demand analysis of the cases of a period that states, in plain sentences with the figures
behind them, what stands out. Each kind of finding is a family of one-sided tests with a Bonferroni correction
(family-wise error ``alpha``, default 0.05, divided by the number of tests in the family) plus a minimum effect
size, so that on ordinary data the report is empty rather than full of noise:

- ``hotspot`` — an area (a grid unit at ``level``, default community) × hour band × category whose case count is
  significantly above what the rest of the district's rate predicts for an area of its size (cells). Test:
  Poisson upper tail, P(X ≥ n | λ = E), E = (cases of the category in the band elsewhere) × cells(area) /
  cells(elsewhere); a finding also needs n ≥ ``min_count`` and n / E ≥ ``min_ratio``.
- ``closes_worst`` — a category whose closure rate (closed / due, as in the KPIs) is significantly below the other
  categories'. Test: binomial lower tail, P(X ≤ closed | due, p = closure rate of the other categories); also needs
  a gap of ``min_gap`` (5 percentage points).
- ``escalation_heavy`` — an area whose share of escalated cases is significantly above the rest of the district's.
  Test: binomial upper tail on the area's cases reported in the period; also needs ``min_ratio`` × the rest's share.
- ``sudden_rise`` — an area × category whose cases in the last ``recent_days`` of the period are significantly
  above its baseline rate over the ``baseline_days`` before (comparison early warning). Test: Poisson upper tail
  with λ = baseline count × recent_days / baseline_days; also needs n ≥ ``min_count`` and n / λ ≥ 2.
- ``parking_shortfall`` — an area with legal parking zones × hour band where parking demand exceeds supply: the
  bays are nearly full and illegal parking there is significantly above the district's rate (central/parking.py).

Hour bands are in the configured time zone: night 19:00–07:00, morning 07:00–10:00, day 10:00–16:00, evening
16:00–19:00 (``DEFAULT_BANDS``; a band may wrap past midnight).
"""

from __future__ import annotations

import html
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import numpy as np
from scipy.stats import binom, poisson
from sqlalchemy import and_, case, or_, select
from sqlalchemy.orm import Session

from central.clock import Clock, SystemClock
from central.command_models import CaseEscalation
from central.config import CentralConfig
from central.db import Case
from central.evaluation import epoch
from central.grid import GridIndex
from central.parking import shortfall_findings


@dataclass(frozen=True)
class Band:
    name: str
    name_zh: str
    start: int  # local hour, inclusive
    end: int  # local hour, exclusive; end <= start wraps past midnight

    def hours(self) -> list[int]:
        if self.end > self.start:
            return list(range(self.start, self.end))
        return list(range(self.start, 24)) + list(range(0, self.end))

    @property
    def label(self) -> str:
        return f"{self.start:02d}:00–{self.end:02d}:00"


DEFAULT_BANDS: tuple[Band, ...] = (
    Band("night", "夜间", 19, 7),
    Band("morning", "早间", 7, 10),
    Band("day", "日间", 10, 16),
    Band("evening", "傍晚", 16, 19),
)
NOT_CASES = ("rejected", "duplicate")


class Row(NamedTuple):
    id: int
    grid_cell: str | None
    category: str
    in_period: bool
    recent: bool  # in the last recent_days before the horizon
    base: bool  # in the baseline window (or later)
    hour: int  # local hour of reported_at


def local_hours(epochs: list[float], tz: Any) -> list[int]:
    """Local hour of day for epoch seconds: the UTC offset is looked up once per distinct UTC hour (exact for time
    zones whose offsets change on whole hours), then applied with numpy."""
    if not epochs:
        return []
    e = np.asarray(epochs, dtype=float)
    utc_hour = np.floor(e / 3600.0).astype(np.int64)
    distinct, inverse = np.unique(utc_hour, return_inverse=True)
    offsets = np.array([datetime.fromtimestamp(int(h) * 3600, UTC).astimezone(tz).utcoffset().total_seconds()
                        for h in distinct])
    local = e + offsets[inverse]
    return (np.floor(local / 3600.0).astype(np.int64) % 24).tolist()


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _peq(p: float) -> str:
    """'= 3.1e-05' or '< 1e-300' (a p-value beyond double precision)."""
    text = _p(p)
    return text if text.startswith("<") else f"= {text}"


def _p(p: float) -> str:
    if p < 1e-300:
        return "< 1e-300"
    return f"{p:.1e}" if p < 0.001 else f"{p:.3f}"


def findings(
    session: Session,
    since: datetime,
    until: datetime,
    *,
    config: CentralConfig,
    grid: GridIndex,
    clock: Clock | None = None,
    level: str = "community",
    bands: tuple[Band, ...] = DEFAULT_BANDS,
    alpha: float = 0.05,
    min_count: int = 10,
    min_ratio: float = 1.5,
    min_gap: float = 0.05,
    recent_days: int = 7,
    baseline_days: int = 56,
) -> dict[str, Any]:
    """The findings report for [since, until) (see the module doc)."""
    if level not in ("cell", "community", "street", "district"):
        raise ValueError("level must be cell, community, street or district")
    now = (clock or SystemClock()).now()
    horizon = min(until, now)
    tz = config.tz
    band_of_hour = {h: b for b in bands for h in b.hours()}
    if sorted(band_of_hour) != list(range(24)) or sum(len(b.hours()) for b in bands) != 24:
        raise ValueError("hour bands must cover the 24 hours exactly once")
    recent_start = horizon - timedelta(days=recent_days)
    base_start = recent_start - timedelta(days=baseline_days)
    fetch_from = min(since, base_start)
    # plain tuples; the window tests in SQL on the stored timestamps, the local hour from epoch seconds
    dialect = session.get_bind().dialect.name
    raw = list(session.execute(
        select(Case.id, Case.grid_cell, Case.category,
               case((Case.reported_at >= since, 1), else_=0), case((Case.reported_at >= recent_start, 1), else_=0),
               case((Case.reported_at >= base_start, 1), else_=0), epoch(Case.reported_at, dialect))
        .where(Case.reported_at >= fetch_from, Case.reported_at < horizon, Case.state.not_in(NOT_CASES))).tuples())
    hours = local_hours([float(r[6]) for r in raw], tz)
    rows = [Row(cid, cell, cat, bool(p), bool(rc), bool(b), h)
            for (cid, cell, cat, p, rc, b, _), h in zip(raw, hours, strict=True)]
    areas_all = grid.of_level(level)
    area_cells = {u.code: len(grid.cells_under(u.code)) for u in areas_all}
    area_cells = {a: n for a, n in area_cells.items() if n}
    total_cells = sum(area_cells.values())
    one_district = len(grid.of_level("district")) <= 1
    elsewhere_en = "the rest of the district" if one_district else "the other areas"
    elsewhere_zh = "辖区其他区域" if one_district else "其他区域"

    def area_of(cell: str | None) -> str | None:
        return grid.unit_at(cell, level)

    def name(code: str) -> tuple[str, str]:
        u = grid.get(code)
        return (u.name, u.name_zh or u.name) if u else (code, code)

    def cat_name(code: str) -> tuple[str, str]:
        c = config.category(code)
        return (c.name, c.name_zh or c.name) if c else (code, code)

    out: list[dict[str, Any]] = []
    families: dict[str, int] = {}

    # ---------------------------------------------------------------- hotspots: area × band × category
    in_period = [r for r in rows if r.in_period]
    n_abk: Counter[tuple[str, str, str]] = Counter()
    n_bk: Counter[tuple[str, str]] = Counter()
    for r in in_period:
        a = area_of(r.grid_cell)
        if a is None or a not in area_cells:
            continue
        b = band_of_hour[r.hour].name
        n_abk[(a, b, r.category)] += 1
        n_bk[(b, r.category)] += 1
    cats = sorted({k for _, k in n_bk})
    m = len(area_cells) * len(bands) * len(cats)
    families["hotspot"] = m
    for a, cells_a in sorted(area_cells.items()):
        rest_cells = total_cells - cells_a
        if rest_cells <= 0:
            continue
        for band in bands:
            for k in cats:
                n = n_abk.get((a, band.name, k), 0)
                rest = n_bk.get((band.name, k), 0) - n
                expected = rest * cells_a / rest_cells
                if n < min_count or expected <= 0 or n / expected < min_ratio:
                    continue
                p = float(poisson.sf(n - 1, expected))
                if p * m >= alpha:
                    continue
                an, an_zh = name(a)
                kn, kn_zh = cat_name(k)
                ratio = n / expected
                share = n / max(1, n_abk_total(n_abk, a, k))
                out.append({
                    "kind": "hotspot", "area": a, "level": level, "band": band.name, "hours": band.label,
                    "category": k, "count": n, "expected": round(expected, 2), "ratio": round(ratio, 2),
                    "share_of_area_category": round(share, 4), "p_value": p, "tests": m,
                    "test": "Poisson upper tail, Bonferroni",
                    "text": (f"{kn} in {an} ({a}) is concentrated at {band.name} ({band.label}): {n} cases against "
                             f"{expected:.1f} expected from {elsewhere_en}'s rate for an area of {cells_a} cells "
                             f"({ratio:.1f}×); {_pct(share)} of the area's {kn.lower()} cases fall in this band "
                             f"(Poisson test, p {_peq(p)}, Bonferroni over {m} area × band × category tests)."),
                    "text_zh": (f"{an_zh}（{a}）的{kn_zh}集中在{band.name_zh}（{band.label}）：{n} 件，按{elsewhere_zh}"
                                f"同时段的发案率，{cells_a} 个网格的区域预期 {expected:.1f} 件"
                                f"（{ratio:.1f} 倍）；该区域此类案件的 {_pct(share)} 发生在这一时段"
                                f"（泊松检验，p {_peq(p)}，"
                                f"对 {m} 项检验作 Bonferroni 校正）。"),
                    "score": ratio,
                })

    # ---------------------------------------------------------------- categories that close worst
    closed_in = and_(Case.closed_at >= since, Case.closed_at < horizon)
    due_rows = session.execute(select(Case.category, case((closed_in, 1), else_=0)).where(
        Case.state.not_in(NOT_CASES), or_(and_(Case.due_at >= since, Case.due_at < horizon), closed_in),
    )).tuples()
    due_k: Counter[str] = Counter()
    closed_k: Counter[str] = Counter()
    for cat, closed in due_rows:
        due_k[cat] += 1
        closed_k[cat] += closed
    m = len(due_k)
    families["closes_worst"] = m
    tot_due, tot_closed = sum(due_k.values()), sum(closed_k.values())
    for k in sorted(due_k):
        d, c = due_k[k], closed_k[k]
        rest_d, rest_c = tot_due - d, tot_closed - c
        if d < min_count or rest_d <= 0:
            continue
        rate, rest_rate = c / d, rest_c / rest_d
        overall = tot_closed / tot_due
        if rest_rate - rate < min_gap:
            continue
        p = float(binom.cdf(c, d, rest_rate))
        if p * m >= alpha:
            continue
        kn, kn_zh = cat_name(k)
        gap = overall - rate
        out.append({
            "kind": "closes_worst", "category": k, "due": d, "closed": c, "closure_rate": round(rate, 4),
            "others_closure_rate": round(rest_rate, 4), "average_closure_rate": round(overall, 4),
            "gap_points": round(100 * gap, 2), "p_value": p, "tests": m, "test": "binomial lower tail, Bonferroni",
            "text": (f"{kn} closes worst: {c} of {d} due cases closed ({_pct(rate)}), {100 * gap:.1f} points below "
                     f"the average of {_pct(overall)} and {100 * (rest_rate - rate):.1f} below the other categories' "
                     f"{_pct(rest_rate)} (binomial test, p {_peq(p)}, Bonferroni over {m} categories)."),
            "text_zh": (f"{kn_zh}结案率最低：{d} 件应结案件结案 {c} 件（{_pct(rate)}），"
                        f"比平均结案率 {_pct(overall)} 低 {100 * gap:.1f} 个百分点，"
                        f"比其他类别（{_pct(rest_rate)}）低 {100 * (rest_rate - rate):.1f} 个"
                        f"百分点（二项检验，p {_peq(p)}，对 {m} 个类别作 Bonferroni 校正）。"),
            "score": 100 * gap,
        })

    # ---------------------------------------------------------------- escalation-heavy areas
    ids_in_period = [r.id for r in in_period]
    escalated: set[int] = set()
    if ids_in_period:
        sub = select(Case.id).where(Case.reported_at >= since, Case.reported_at < horizon,
                                    Case.state.not_in(NOT_CASES))
        escalated = set(session.scalars(select(CaseEscalation.case_id).where(
            CaseEscalation.case_id.in_(sub), CaseEscalation.at < horizon).distinct()))
    n_a: Counter[str] = Counter()
    e_a: Counter[str] = Counter()
    for r in in_period:
        a = area_of(r.grid_cell)
        if a is None:
            continue
        n_a[a] += 1
        if r.id in escalated:
            e_a[a] += 1
    m = len(n_a)
    families["escalation_heavy"] = m
    tot_n, tot_e = sum(n_a.values()), sum(e_a.values())
    for a in sorted(n_a):
        n, e = n_a[a], e_a[a]
        rest_n, rest_e = tot_n - n, tot_e - e
        if e < min_count or rest_n <= 0:
            continue
        share, rest_share = e / n, rest_e / rest_n
        if rest_share > 0 and share / rest_share < min_ratio:
            continue
        p = float(binom.sf(e - 1, n, rest_share)) if rest_share > 0 else 0.0
        if p * m >= alpha:
            continue
        an, an_zh = name(a)
        out.append({
            "kind": "escalation_heavy", "area": a, "level": level, "cases": n, "escalated": e,
            "share": round(share, 4), "others_share": round(rest_share, 4),
            "ratio": round(share / rest_share, 2) if rest_share else None, "p_value": p, "tests": m,
            "test": "binomial upper tail, Bonferroni",
            "text": (f"{an} ({a}) escalates far more than {elsewhere_en}: {e} of its {n} cases ({_pct(share)}) went "
                     f"up beyond the grid, against {_pct(rest_share)} elsewhere (binomial test, p {_peq(p)}, "
                     f"Bonferroni over {m} areas)."),
            "text_zh": (f"{an_zh}（{a}）上报升级明显多于{elsewhere_zh}：{n} 件案件中有 {e} 件"
                        f"（{_pct(share)}）升级出网格，其他区域为 {_pct(rest_share)}"
                        f"（二项检验，p {_peq(p)}，对 {m} 个区域作 Bonferroni 校正）。"),
            "score": share / rest_share if rest_share else float(e),
        })

    # ---------------------------------------------------------------- sudden rises vs baseline
    recent: Counter[tuple[str, str]] = Counter()
    base: Counter[tuple[str, str]] = Counter()
    for r in rows:
        a = area_of(r.grid_cell)
        if a is None:
            continue
        if r.recent:
            recent[(a, r.category)] += 1
        elif r.base:
            base[(a, r.category)] += 1
    keys = sorted(set(recent) | set(base))
    covered = base_start >= fetch_from and horizon > since
    m = len(keys) if covered else 0
    families["sudden_rise"] = m
    for a, k in keys if m else []:
        n = recent.get((a, k), 0)
        b = base.get((a, k), 0)
        lam = max(b, 1) * recent_days / baseline_days  # an area with no baseline counts as one case in it
        if n < min_count or n / lam < 2:
            continue
        p = float(poisson.sf(n - 1, lam))
        if p * m >= alpha:
            continue
        an, an_zh = name(a)
        kn, kn_zh = cat_name(k)
        out.append({
            "kind": "sudden_rise", "area": a, "level": level, "category": k, "count": n, "baseline": b,
            "expected": round(lam, 2), "ratio": round(n / lam, 2), "recent_days": recent_days,
            "baseline_days": baseline_days, "p_value": p, "tests": m, "test": "Poisson upper tail, Bonferroni",
            "text": (f"{kn} in {an} ({a}) rose sharply: {n} cases in the last {recent_days} days against {lam:.1f} "
                     f"expected from the {b} of the {baseline_days} days before ({n / lam:.1f}×; Poisson test, "
                     f"p {_peq(p)}, Bonferroni over {m} area × category series)."),
            "text_zh": (f"{an_zh}（{a}）的{kn_zh}突增：最近 {recent_days} 天 {n} 件，按此前 {baseline_days} 天的 {b} 件"
                        f"预期 {lam:.1f} 件（{n / lam:.1f} 倍；泊松检验，p {_peq(p)}，"
                        f"对 {m} 个序列作 Bonferroni 校正）。"),
            "score": n / lam,
        })

    # ---------------------------------------------------------------- parking demand above supply
    parking, families["parking_shortfall"] = shortfall_findings(
        session, since, horizon, config=config, grid=grid, level=level, bands=bands, name=name, alpha=alpha,
        min_count=min_count, min_ratio=min_ratio)
    out += parking

    order = {"hotspot": 0, "closes_worst": 1, "escalation_heavy": 2, "sudden_rise": 3, "parking_shortfall": 4}
    out.sort(key=lambda f: (order[f["kind"]], -f["score"]))
    return {
        "since": since.isoformat(), "until": until.isoformat(), "generated_at": now.isoformat(),
        "cases": len(in_period), "level": level, "alpha": alpha, "tests": families,
        "bands": [{"name": b.name, "name_zh": b.name_zh, "hours": b.label} for b in bands],
        "findings": out,
    }


def n_abk_total(counter: Counter[tuple[str, str, str]], area: str, category: str) -> int:
    return sum(n for (a, _b, k), n in counter.items() if a == area and k == category)


def to_html(report: dict[str, Any], *, lang: str = "en", title: str = "GridWatch findings") -> str:
    """A self-contained HTML report (no scripts, no external resources) of a findings report."""
    key = "text_zh" if lang.startswith("zh") else "text"
    heads = {"hotspot": ("Space × time hotspots", "时空热点"),
             "closes_worst": ("Categories that close worst", "结案率低的类别"),
             "escalation_heavy": ("Escalation-heavy areas", "升级集中的区域"),
             "sudden_rise": ("Sudden rises", "突增预警"),
             "parking_shortfall": ("Parking demand above supply", "停车供需缺口")}
    zh = key == "text_zh"
    by_kind: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for f in report["findings"]:
        by_kind[f["kind"]].append(f)
    parts = [f"<!doctype html><html lang=\"{'zh-CN' if zh else 'en'}\"><head><meta charset=\"utf-8\">",
             f"<title>{html.escape(title)}</title><style>body{{font:15px/1.5 system-ui,sans-serif;max-width:60em;"
             "margin:2em auto;padding:0 1em;color:#1a1a1a}h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.5em}"
             "li{margin:.4em 0}.meta{color:#555}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>",
             f"<p class=\"meta\">{html.escape(report['since'])} → {html.escape(report['until'])} · "
             f"{report['cases']} {'件案件' if zh else 'cases'} · α = {report['alpha']}</p>"]
    if not report["findings"]:
        nothing = "没有显著发现。" if zh else "Nothing stands out: no test passed its corrected threshold."
        parts.append(f"<p>{nothing}</p>")
    for kind, (en, zh_name) in heads.items():
        items = by_kind.get(kind)
        if not items:
            continue
        parts.append(f"<h2>{html.escape(zh_name if zh else en)}</h2><ul>")
        parts.extend(f"<li>{html.escape(f[key])}</li>" for f in items)
        parts.append("</ul>")
    parts.append("</body></html>")
    return "".join(parts)
