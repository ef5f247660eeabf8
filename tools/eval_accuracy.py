"""Accuracy of the whole edge pipeline on the labelled footage (labels: eval/labels/, docs/accuracy.md).

    .venv/bin/python tools/eval_accuracy.py                                  # every labelled clip, default config
    .venv/bin/python tools/eval_accuracy.py --clips crowd_mall_cctv_1 --fps 1 2
    .venv/bin/python tools/eval_accuracy.py --variant default --variant tiled     # two configurations side by side
    .venv/bin/python tools/eval_accuracy.py --variant 'ssd400={detector: {input_size: 400}}' --json var/acc.json

Each case runs the real worker (edge.worker.EdgeWorker) on a generated cameras.yaml with zones drawn from
the clip's labels, fast playback on the file's own clock, and scores what it publishes
(tools/accuracy/scoring.py). Built-in variants: ``default`` (the product's defaults: no detector section),
``tiled`` (2x2 tiles + full frame), ``sample`` (the detector section of ./cameras.yaml). Any other
``NAME=YAML`` is deep-merged over the generated cameras.yaml.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.accuracy.labels import LABELS_DIR, REPO_ROOT, all_labels  # noqa: E402
from tools.accuracy.runner import CaseRunner  # noqa: E402
from tools.accuracy.scoring import CaseScore, score_case  # noqa: E402

BUILTIN_VARIANTS = {
    "default": {},
    "tiled": {"defaults": {"tiling": {"enabled": True}}},
}


def parse_variant(spec: str) -> tuple[str, dict]:
    name, _, text = spec.partition("=")
    if not text:
        if name == "sample":
            sample = yaml.safe_load((REPO_ROOT / "cameras.yaml").read_text())
            return name, {"detector": sample.get("detector") or {}}
        if name not in BUILTIN_VARIANTS:
            raise SystemExit(f"unknown variant {name!r}: use default, tiled, sample or NAME=YAML")
        return name, BUILTIN_VARIANTS[name]
    value = yaml.safe_load(text)
    if not isinstance(value, dict):
        raise SystemExit(f"variant {name!r}: expected a YAML mapping, got {text!r}")
    return name, value


def fmt(v: float | None, spec: str = ".2f") -> str:
    return "-" if v is None else format(v, spec)


def print_table(scores: list[CaseScore]) -> None:
    head = (f"{'clip':<30} {'variant':<10} {'fps':>3} {'park':>7} {'inc':>4} {'FP':>3} {'dup':>3} "
            f"{'negFP':>5} {'negFP/h':>7} {'count MAE':>9} {'rel(med)':>8} {'raw MAE':>7} {'vendFP':>6} "
            f"{'ms/frame':>8}  dropped")
    print(head)
    print("-" * len(head))
    for s in scores:
        c, r = s.count_stats(), s.count_stats(raw=True)
        park = f"{len(s.parking_found)}/{len(s.parking_expected)}" if s.parking_expected else "-"
        dropped = ",".join(f"{k}={v}" for k, v in sorted(s.dropped.items())) or "-"
        print(f"{s.clip[:30]:<30} {s.variant[:10]:<10} {s.detect_fps:>3g} {park:>7} {s.parking_incidents:>4} "
              f"{s.parking_false:>3} {s.parking_duplicates:>3} {s.negative_false:>5} "
              f"{s.negative_false_per_hour:>7.0f} {fmt(c and c['mae'], '.1f'):>9} "
              f"{fmt(c and c['median_rel'], '.0%'):>8} {fmt(r and r['mae'], '.1f'):>7} {s.vending_false:>6} "
              f"{s.cpu_ms_per_frame:>8.0f}  {dropped}")
    print()
    variants = sorted({(s.variant, s.detect_fps) for s in scores}, key=str)
    print(f"{'variant':<10} {'fps':>3} {'recall':>9} {'park FP':>7} {'dup':>3} {'neg FP':>6} {'vend FP':>7} "
          f"{'count rel(med)':>14} {'ms/frame':>8}")
    for name, fps in variants:
        rows = [s for s in scores if s.variant == name and s.detect_fps == fps]
        exp = sum(len(s.parking_expected) for s in rows)
        found = sum(len(s.parking_found) for s in rows)
        rels = [c.rel_error for s in rows for c in s.counts]
        frames = sum(s.frames for s in rows)
        ms = sum(s.cpu_ms_per_frame * s.frames for s in rows) / frames if frames else 0.0
        rel = sorted(rels)[len(rels) // 2] if rels else None
        print(f"{name[:10]:<10} {fps:>3g} {f'{found}/{exp}':>9} {sum(s.parking_false for s in rows):>7} "
              f"{sum(s.parking_duplicates for s in rows):>3} {sum(s.negative_false for s in rows):>6} "
              f"{sum(s.vending_false for s in rows):>7} {fmt(rel, '.0%'):>14} {ms:>8.0f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", nargs="*", help="clip stems (default: every labelled clip)")
    ap.add_argument("--variant", action="append", help="default | tiled | sample | NAME=YAML (repeatable)")
    ap.add_argument("--fps", type=float, nargs="*", default=[1.0], help="detect fps to run at (default 1)")
    ap.add_argument("--labels-dir", type=Path, default=LABELS_DIR)
    ap.add_argument("--media-dir", type=Path, default=REPO_ROOT.parent / "shared" / "media")
    ap.add_argument("--json", type=Path, help="write every score (and the false incidents) as JSON")
    ap.add_argument("--show-false", action="store_true", help="print each false incident")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    labels = all_labels(args.labels_dir)
    if args.clips:
        labels = [lab for lab in labels if lab.stem in set(args.clips)]
        missing = set(args.clips) - {lab.stem for lab in labels}
        if missing:
            raise SystemExit(f"no label file for: {', '.join(sorted(missing))}")
    variants = [parse_variant(v) for v in (args.variant or ["default"])]
    runner = CaseRunner(args.media_dir)
    scores = []
    for lab in labels:
        for fps in args.fps:
            for name, variant in variants:  # variants interleaved per clip: comparable under the same load
                result = runner.run(lab, name, variant, fps)
                scores.append(score_case(lab, result, args.media_dir))
                print(f"  ran {lab.stem} {name} @{fps:g} fps: {result.frames} frames, {result.wall_s:.1f} s",
                      file=sys.stderr, flush=True)
    print_table(scores)
    if args.show_false:
        for s in scores:
            for f in s.false_incidents:
                print(f"false: {s.clip} {s.variant} @{s.detect_fps:g}: {f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([s.to_dict() for s in scores], indent=1, default=str))


if __name__ == "__main__":
    main()
