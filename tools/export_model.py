"""Export an ultralytics .pt model to ONNX for detector.kind onnx_yolo (needs the optional extra `export`)."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("weights", help="path to a .pt file (ultralytics models are AGPL-3.0; see models/README.md)")
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--end2end", action="store_true", help="NMS inside the model (YOLO26)")
    ap.add_argument("--dynamic", action="store_true", help="dynamic batch and input size")
    args = ap.parse_args(argv)
    try:
        from ultralytics import YOLO
    except ImportError:
        print("ultralytics is not installed: pip install 'gridwatch[export]'", file=sys.stderr)
        return 2
    kwargs = {"format": "onnx", "imgsz": args.imgsz, "dynamic": args.dynamic, "opset": 17}
    if args.end2end:
        kwargs["nms"] = True
    print(YOLO(args.weights).export(**kwargs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
