"""tools/bench_edge.py's soak verdict: RSS by thirds, last third within 5 % of the middle third."""

from __future__ import annotations

from tools.bench_edge import rss_thirds


def test_allocator_warm_up_that_levels_off_is_flat():
    # 30 one-second samples: a climb in the first third (arenas, model buffers), then level
    rss = [500 + 10 * i for i in range(10)] + [600.0] * 10 + [603.0] * 10
    r = rss_thirds(rss)
    assert r["rss_thirds_mb"] == [545.0, 600.0, 603.0]
    assert r["rss_last_vs_middle_third"] == 0.005
    assert r["rss_flat"]


def test_steady_climb_is_not_flat():
    rss = [500 + 5 * i for i in range(60)]  # +5 MiB a sample: a leak
    r = rss_thirds(rss)
    assert r["rss_last_vs_middle_third"] > 0.05
    assert not r["rss_flat"]


def test_shrinking_by_more_than_5_percent_is_not_flat_either():
    r = rss_thirds([700.0] * 10 + [700.0] * 10 + [600.0] * 10)
    assert not r["rss_flat"]


def test_too_short_a_run_gives_no_verdict():
    assert rss_thirds([500.0, 510.0]) == {}
