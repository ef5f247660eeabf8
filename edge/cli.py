"""`gridwatch-edge`: check a cameras.yaml, or run the edge worker.

    gridwatch-edge check cameras.yaml
    gridwatch-edge run --config cameras.yaml [--once] [--no-mqtt] [--print] [--duration 60]
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

from edge.config import CameraConfig, ConfigError, EdgeConfig, ZoneConfig, check_class_names, load_config
from edge.detectors.base import DetectorError
from edge.logs import ENV_VAR, FORMATS, configure_logging
from edge.redact import mask_url

log = logging.getLogger("gridwatch.edge")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gridwatch-edge", description="GridWatch edge worker")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--log-format", choices=FORMATS, default=None,
                        help=f"text (default) or json: one JSON object per line (also ${ENV_VAR})")
    sub = parser.add_subparsers(dest="command", required=True)

    p_check = sub.add_parser("check", help="validate cameras.yaml and print the effective settings")
    p_check.add_argument("config", type=Path)

    p_run = sub.add_parser("run", help="run every enabled camera until SIGTERM/SIGINT")
    p_run.add_argument("--config", type=Path, default=Path("cameras.yaml"))
    p_run.add_argument("--once", action="store_true", help="process one frame per camera and exit")
    p_run.add_argument("--no-mqtt", action="store_true", help="do not publish (vision only)")
    p_run.add_argument("--print", dest="print_detections", action="store_true", help="print detections per frame")
    p_run.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p_run.add_argument("--annotate-every", type=float, default=None,
                       help="write an annotated frame per camera this often (seconds of stream time)")
    p_run.add_argument("--fast", action="store_true", help="play files as fast as possible (file clock)")

    args = parser.parse_args(argv)
    try:
        configure_logging(logging.DEBUG if args.verbose else logging.INFO, args.log_format)
    except ValueError as e:  # $GRIDWATCH_LOG_FORMAT set to something else
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        if args.command == "check":
            return cmd_check(args.config)
        return cmd_run(args)
    except ConfigError as e:
        print(f"configuration error in {e}", file=sys.stderr)
        return 2


def cmd_check(path: Path) -> int:
    cfg = load_config(path)
    try:
        names = model_class_names(cfg)
    except (DetectorError, OSError, IndexError) as e:  # an unreadable file or broken metadata: name it
        raise ConfigError(str(path), [("detector.model_path", f"cannot read the model's class names: {e}")]) from None
    problems = check_class_names(cfg, names)
    if problems:
        raise ConfigError(str(path), problems)
    print(format_summary(cfg))
    return 0


def model_class_names(cfg: EdgeConfig) -> list[str] | None:
    """The names zone classes are checked against: the config's own or COCO for SSD, else (an ONNX model without
    detector.class_names) the names in the model file's metadata, read without loading a runtime."""
    det = cfg.detector
    known = det.known_class_names()
    if known or det.kind != "onnx_yolo" or det.model_path is None or not det.model_path.is_file():
        return known
    from edge.detectors.yolo_onnx import onnx_metadata, parse_names

    meta = onnx_metadata(det.model_path)
    return parse_names(meta["names"]) if "names" in meta else None


def format_summary(cfg: EdgeConfig) -> str:
    """Readable summary of a validated config, with the effective (defaults-merged) camera settings."""
    det = cfg.detector
    lines = [
        f"edge {cfg.edge_id} — site {cfg.site.name!r} ({cfg.site.timezone})",
        f"detector: {det.kind}{f' {det.model_path}' if det.model_path else ''}, score ≥ {det.score_threshold}"
        + (f", classes {', '.join(det.classes)}" if det.classes else "")
        + (", tiling on" if det.tiling.enabled else ""),
        f"mqtt: {cfg.mqtt.host}:{cfg.mqtt.port} as {cfg.mqtt_client_id()}"
        + (" (TLS)" if cfg.mqtt.tls.enabled else "") + (" with credentials" if cfg.mqtt.username else "")
        if cfg.mqtt else "mqtt: off (vision only)",
        f"outbox: {cfg.outbox.path} (max {cfg.outbox.max_events} events)",
        f"cameras: {len(cfg.cameras)} ({len(cfg.enabled_cameras())} enabled)",
    ]
    for cam in cfg.cameras:
        lines += _camera_lines(cam)
    return "\n".join(lines)


def _camera_lines(cam: CameraConfig) -> list[str]:
    loc = cam.location
    where = ", ".join(x for x in [loc.address, f"grid {loc.grid_cell}" if loc.grid_cell else None] if x)
    lines = [
        f"  - {cam.id} {cam.display_name!r}{'' if cam.enabled else ' [disabled]'}" + (f" — {where}" if where else ""),
        f"      url: {mask_url(cam.url)}" + (f"  detect_url: {mask_url(cam.detect_url)}" if cam.detect_url else ""),
        f"      detect {cam.detect_fps:g} fps, stall after {cam.stall_timeout_s:g}s, reconnect "
        f"{cam.reconnect_min_s:g}-{cam.reconnect_max_s:g}s, rtsp {cam.rtsp_transport}, playback {cam.playback}"
        + (" (loop)" if cam.loop else "") + f", decode {cam.decode}",
    ]
    if not cam.zones:
        lines.append("      zones: none")
    for z in cam.zones:
        lines.append(f"      zone {z.name!r} ({z.type.value}): {_zone_rule(z)}")
    return lines


def _zone_rule(z: ZoneConfig) -> str:
    parts = [f"{len(z.points)} points", f"classes {', '.join(z.watched_classes())}", f"anchor {z.anchor.value}"]
    if z.type.value == "crowd":
        lv = z.levels
        parts.append(f"area {z.ground_area_m2():g} m², levels {lv.elevated:g}/{lv.high:g}/{lv.critical:g} per m²")
    elif z.type.value == "parking":
        bays = f" in {len(z.bays)} bays" if z.bays else ""
        parts.append(f"{z.spaces()} spaces{bays}, occupancy every {z.report_every_s:g}s")
    else:
        parts.append(f"dwell {z.dwell_s:g}s, grace {z.grace_s:g}s")
    if z.type.value == "no_vending":
        parts.append(f"evidence {', '.join(z.vending_evidence())}")
    if z.schedule:
        parts.append("active " + "; ".join(f"{w.days} {w.start}-{w.end}" for w in z.schedule))
    else:
        parts.append("always active")
    if not z.enabled:
        parts.append("DISABLED")
    return ", ".join(parts)


def cmd_run(args: argparse.Namespace) -> int:
    from edge.worker import EdgeWorker

    cfg = load_config(args.config)
    if args.fast:
        for cam in cfg.cameras:
            cam.playback = "fast"
    if args.annotate_every:
        cfg.snapshots.annotated_every_s = args.annotate_every
    publisher = None
    if cfg.mqtt is not None and not args.no_mqtt and not args.once:
        from edge.mqtt import EdgePublisher

        publisher = EdgePublisher(cfg)
    worker = EdgeWorker(cfg, config_path=args.config, publisher=publisher,
                        print_detections=args.print_detections or args.once)

    def on_signal(signum: int, _frame: object) -> None:
        log.info("received %s, shutting down", signal.Signals(signum).name)
        worker.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    worker.start()
    health = None
    address = cfg.health.address()
    if address is not None and not args.once:
        from edge.metrics import start_health_server

        try:
            health = start_health_server(worker, *address)
        except OSError as e:  # the endpoint is for operations; vision and publishing run without it
            log.error("health endpoint %s not started: %s", cfg.health.listen, e)
    try:
        worker.run(once=args.once, duration_s=args.duration)
    finally:
        if health is not None:
            health.stop()
        worker.close()
    if args.once:
        for row in worker.health():
            print(f"{row['camera_id']}: {row['state']} analysed={row['frames_analyzed']}"
                  + (f" error={row['last_error']}" if row.get("last_error") else ""))
    log.info("stopped: %s", dict(worker.counters))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
