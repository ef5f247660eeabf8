"""CPU per second of video for FFmpeg decoder options, through PyAV, on the sample clips.

    .venv/bin/python tools/bench_decoder_options.py                    # the four bench_edge clips
    .venv/bin/python tools/bench_decoder_options.py crowd_plaza_1.mp4 --repeat 5

Each clip is decoded whole, with one decoder thread (the edge default), for each ``skip_frame`` mode the edge uses
(``DEFAULT`` = decode: all, ``NONREF`` = decode: nonref) and each option set: FFmpeg's defaults,
``skip_loop_filter=all`` (no deblocking), ``flags2=+fast`` (H.264 shortcuts that are not bit-exact) and both.
Prints the process CPU per second of video (minimum of ``--repeat`` passes: the least disturbed by other jobs) and
the frames decoded. The options only change decoding CPU; what they do to accuracy needs tools/eval_accuracy.py.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import av

ROOT = Path(__file__).resolve().parents[1]
MEDIA = ROOT.parent / "shared" / "media"
CLIPS = [
    "traffic_intersection_cctv_1.mp4",
    "crowd_plaza_1.mp4",
    "street_parking_residential_1.mp4",
    "pedestrians_campus_cctv_4.avi",
]
VARIANTS: dict[str, dict[str, str]] = {
    "default": {},
    "skip_loop_filter=all": {"skip_loop_filter": "all"},
    "flags2=+fast": {"flags2": "+fast"},
    "both": {"skip_loop_filter": "all", "flags2": "+fast"},
}


def decode_cpu(path: Path, options: dict[str, str], skip_frame: str) -> tuple[float, int, float]:
    """(CPU seconds, frames decoded, clip seconds) for one whole pass over ``path``."""
    container = av.open(str(path))
    try:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        stream.thread_type = "SLICE"
        if options:
            stream.codec_context.options = dict(options)  # read when the decoder opens, at the first packet
        stream.codec_context.skip_frame = skip_frame
        t0, frames = time.process_time(), 0
        for packet in container.demux(stream):
            frames += len(packet.decode())
        cpu = time.process_time() - t0
        return cpu, frames, float(container.duration / 1e6)
    finally:
        container.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("clips", nargs="*", help=f"file names in {MEDIA} (default: the four bench_edge clips)")
    ap.add_argument("--repeat", type=int, default=3, help="passes per variant; the minimum CPU is reported")
    args = ap.parse_args()
    print(
        f"{'clip':<34}{'skip_frame':<11}" + "".join(f"{name:>22}" for name in VARIANTS) + "   (CPU ms per s of video)"
    )
    for clip in args.clips or CLIPS:
        path = MEDIA / clip
        if not path.is_file():
            raise SystemExit(f"{path}: no such clip")
        for skip in ("DEFAULT", "NONREF"):
            cells = []
            for options in VARIANTS.values():
                runs = [decode_cpu(path, options, skip) for _ in range(args.repeat)]
                cpu = min(r[0] for r in runs)
                frames, seconds = runs[0][1], runs[0][2]
                cells.append(f"{cpu * 1000 / seconds:8.1f} ({frames:>4} fr)")
            print(f"{clip:<34}{skip:<11}" + "".join(f"{c:>22}" for c in cells), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
