"""Extract frames of a clip for labelling by eye, with a normalized coordinate grid burnt in.

    .venv/bin/python tools/label_frames.py ../shared/media/crowd_plaza_1.mp4 --times 0 5 10 --out var/label
    .venv/bin/python tools/label_frames.py CLIP --every 5 --labels eval/labels/CLIP.yaml --out var/label

Each output PNG is the first frame at or after that clip time (the file's own clock, as the worker sees it;
the file name carries the frame's own timestamp), upscaled
to at least ``--min-width`` pixels, with grid lines every 0.1 (thin every 0.05) labelled in normalized
0..1 coordinates, so boxes can be read off directly in the label format of eval/labels/README.md.
With ``--labels`` the label file's vehicles, zones and groups are drawn on top, to check a label file
against the footage. ``--crop x1 y1 x2 y2`` (normalized) zooms into a part of the frame, keeping the
grid in full-frame coordinates.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import yaml


def frames_at(path: Path, times: list[float]) -> list[tuple[float, float, np.ndarray]]:
    """(asked time, frame pts, image) of the first frame at or after each time, decoding in order.

    Seeking (CAP_PROP_POS_MSEC) lands on the wrong frame in files whose timestamps do not start at 0 or
    are irregular (street_parking_residential_1 starts at 1.86 s), so frames are picked by their own pts,
    the clock the worker uses.
    """
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise SystemExit(f"cannot open {path}")
    wanted = sorted(times)
    out = []
    while wanted and cap.grab():
        pts = cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
        if pts + 1e-6 < wanted[0]:
            continue
        ok, img = cap.retrieve()
        while ok and wanted and wanted[0] <= pts + 1e-6:
            out.append((wanted.pop(0), pts, img))
    cap.release()
    return out


def draw_grid(img: np.ndarray, crop: tuple[float, float, float, float]) -> np.ndarray:
    h, w = img.shape[:2]
    x1, y1, x2, y2 = crop
    out = img.copy()
    for k in range(0, 21):
        v = k / 20
        major = k % 2 == 0
        colour = (0, 255, 255) if major else (0, 160, 160)
        if x1 <= v <= x2:
            px = round((v - x1) / (x2 - x1) * (w - 1))
            cv2.line(out, (px, 0), (px, h - 1), colour, 1)
            if major:
                cv2.putText(out, f"{v:.1f}", (px + 2, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, colour, 1)
        if y1 <= v <= y2:
            py = round((v - y1) / (y2 - y1) * (h - 1))
            cv2.line(out, (0, py), (w - 1, py), colour, 1)
            if major:
                cv2.putText(out, f"{v:.1f}", (2, py - 2), cv2.FONT_HERSHEY_SIMPLEX, 0.4, colour, 1)
    return out


def draw_labels(img: np.ndarray, labels: dict, t: float, crop: tuple[float, float, float, float]) -> np.ndarray:
    h, w = img.shape[:2]
    x1, y1, x2, y2 = crop

    def px(p: tuple[float, float]) -> tuple[int, int]:
        return round((p[0] - x1) / (x2 - x1) * w), round((p[1] - y1) / (y2 - y1) * h)

    for zone in labels.get("zones") or []:
        pts = np.array([px(p) for p in zone["points"]], dtype=np.int32)
        colour = (0, 0, 255) if zone.get("kind") == "negative" else (255, 128, 0)
        cv2.polylines(img, [pts], True, colour, 1)
        cv2.putText(img, zone["name"], tuple(pts[0]), cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1)
    for item in [*(labels.get("vehicles") or []), *(labels.get("groups") or [])]:
        a, b = item.get("present", [0, 1e9])
        if not (a <= t <= b):
            continue
        bx = item["box"]
        p1, p2 = px((bx[0], bx[1])), px((bx[2], bx[3]))
        colour = (160, 160, 160) if item.get("ambiguous") else (0, 255, 0)
        cv2.rectangle(img, p1, p2, colour, 1)
        cv2.putText(img, item["id"], (p1[0], max(10, p1[1] - 3)), cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1)
    return img


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("clip", type=Path)
    ap.add_argument("--times", type=float, nargs="*", default=[], help="clip times in seconds")
    ap.add_argument("--every", type=float, help="also a frame every this many seconds")
    ap.add_argument("--labels", type=Path, help="draw this label file on top")
    ap.add_argument("--crop", type=float, nargs=4, default=[0.0, 0.0, 1.0, 1.0], metavar=("X1", "Y1", "X2", "Y2"))
    ap.add_argument("--min-width", type=int, default=1280)
    ap.add_argument("--no-grid", action="store_true")
    ap.add_argument("--out", type=Path, default=Path("var/label"))
    args = ap.parse_args()

    cap = cv2.VideoCapture(str(args.clip))
    if not cap.isOpened():
        raise SystemExit(f"cannot open {args.clip}")
    duration = cap.get(cv2.CAP_PROP_FRAME_COUNT) / (cap.get(cv2.CAP_PROP_FPS) or 25.0)
    cap.release()
    times = list(args.times)
    if args.every:
        times += list(np.arange(0.0, duration, args.every))
    labels = yaml.safe_load(args.labels.read_text()) if args.labels else None
    args.out.mkdir(parents=True, exist_ok=True)
    crop = tuple(args.crop)
    for _asked, pts, img in frames_at(args.clip, sorted({round(t, 2) for t in times})):
        h, w = img.shape[:2]
        cx1, cy1, cx2, cy2 = (round(crop[0] * w), round(crop[1] * h), round(crop[2] * w), round(crop[3] * h))
        img = img[cy1:cy2, cx1:cx2]
        scale = max(1.0, args.min_width / img.shape[1])
        img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
        if not args.no_grid:
            img = draw_grid(img, crop)
        if labels:
            img = draw_labels(img, labels, pts, crop)
        path = args.out / f"{args.clip.stem}_t{pts:06.2f}.png"
        cv2.imwrite(str(path), img)
        print(path)


if __name__ == "__main__":
    main()
