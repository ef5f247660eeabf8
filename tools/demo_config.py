"""The demo's central.yaml: the repository's central.yaml (categories, routing of the sample site's grid cells to
squads, display names) with SQLite and evidence under the demo directory, the demo's own broker, and the zone editor
saving into the repository's cameras.yaml.

    .venv/bin/python tools/demo_config.py var/demo 18830     # writes var/demo/central.yaml (scripts/demo.sh)
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]


def demo_central_config(demo_dir: Path, mqtt_port: int, source: Path = REPO / "central.yaml") -> dict[str, Any]:
    demo_dir = demo_dir.resolve()
    cfg = yaml.safe_load(source.read_text(encoding="utf-8"))
    cfg.update(database_url=f"sqlite:///{demo_dir}/central.db", evidence_dir=f"{demo_dir}/evidence",
               zone_config_path=str((REPO / "cameras.yaml").resolve()))
    cfg["mqtt"].update(host="127.0.0.1", port=mqtt_port, client_id="gridwatch-central-demo", username=None,
                       password=None)
    cfg["mqtt"].pop("edges", None)  # the demo broker is anonymous; any edge id the demo runs is welcome
    return cfg


def main(argv: list[str]) -> int:
    demo_dir, port = Path(argv[0]), int(argv[1])
    demo_dir.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(demo_central_config(demo_dir, port), allow_unicode=True, sort_keys=False)
    (demo_dir / "central.yaml").write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
