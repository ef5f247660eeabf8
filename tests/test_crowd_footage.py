"""Crowd counts and vending on real footage, scored by the accuracy tool (tools/accuracy) exactly as
``tools/eval_accuracy.py --clips crowd_mall_cctv_1 crowd_plaza_1 --fps 1`` does: the real edge worker with
the product's defaults (SSD, no tiling) on a generated cameras.yaml, its published crowd figures scored
against the labels (eval/labels/). Nothing here is fitted to the labels: the figures come from what the
running system learns from its own detections.
"""

from __future__ import annotations

import statistics

import pytest

from tools.accuracy.labels import LABELS_DIR, load_labels
from tools.accuracy.runner import CaseResult, CaseRunner
from tools.accuracy.scoring import CaseScore, score_case

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runner(media_dir) -> CaseRunner:
    return CaseRunner(media_dir)


def run_clip(runner: CaseRunner, media_dir, stem: str) -> tuple[CaseResult, CaseScore]:
    labels = load_labels(LABELS_DIR / f"{stem}.yaml")
    result = runner.run(labels, "default", {}, 1.0)
    return result, score_case(labels, result, media_dir)


def test_mall_count_within_five_people_per_frame_over_all_200_frames(runner, media_dir):
    result, score = run_clip(runner, media_dir, "crowd_mall_cctv_1")
    est, raw = score.count_stats(), score.count_stats(raw=True)
    assert est["n"] == 200  # every ground-truth frame has a published figure within one analysis period
    assert est["mae"] <= 5.0  # measured 4.6; the raw detector count is off by 16.5
    assert raw["mae"] >= 14.0 and raw["bias"] < -12  # the raw count is kept beside the estimate, and saturates
    assert est["median_rel"] <= 0.20
    figures = [f for f in result.crowd if f["zone"] == "count-full"]
    assert {f["count_method"] for f in figures[6:]} == {"tracks+foreground"}
    assert all(f["count_low"] <= f["count"] <= f["count_high"] for f in figures)
    # the 80 % interval holds the truth in most frames (measured 154 of 200)
    by_t = {round(f["t"]): f for f in figures}
    truth = [(round(c.t), c.truth) for c in score.counts]
    inside = [by_t[t]["count_low"] <= n <= by_t[t]["count_high"] for t, n in truth if t in by_t]
    assert sum(inside) / len(inside) >= 0.65


def test_plaza_walking_crowd_counted_and_its_standing_group_is_no_stall(runner, media_dir):
    result, score = run_clip(runner, media_dir, "crowd_plaza_1")
    est = score.count_stats()
    assert est["n"] == 6 and est["median_rel"] <= 0.20  # measured 11 %; raw detections are about 50 % low
    assert score.count_stats(raw=True)["median_rel"] >= 0.4
    # the whole frame is a no_vending zone (product defaults, dwell 10 s): four people standing together
    # with a phone and a camera bag for the whole clip are no stall
    assert score.vending_incidents == 0
    figures = [f for f in result.crowd if f["zone"] == "count-full"]
    assert max(f["stationary"] for f in figures) >= 2  # the standing people are reported as stationary
    assert statistics.median(f["stationary"] for f in figures) <= 4
