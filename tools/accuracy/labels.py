"""The label files of eval/labels/ (format: eval/labels/README.md) as pydantic models.

Unknown keys are errors, so a typo in a label file is caught rather than silently scoring nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

REPO_ROOT = Path(__file__).resolve().parents[2]
LABELS_DIR = REPO_ROOT / "eval" / "labels"
FULL_FRAME = [(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)]

Box = tuple[float, float, float, float]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Vehicle(_Strict):
    id: str
    cls: str = Field(alias="class")
    state: Literal["parked", "stopped"]
    box: Box
    ref_t: float
    present: tuple[float, float]
    ambiguous: bool = False
    note: str | None = None

    def present_for(self) -> float:
        return self.present[1] - self.present[0]

    def bottom_center(self) -> tuple[float, float]:
        return ((self.box[0] + self.box[2]) / 2, self.box[3])


class LabelZone(_Strict):
    name: str
    kind: Literal["parking", "negative"]
    points: list[tuple[float, float]]
    dwell_s: float = 10.0
    note: str | None = None


class Region(_Strict):
    name: str
    points: list[tuple[float, float]]


class PersonCount(_Strict):
    t: float
    region: str = "full"
    count: int
    cut: int = 0
    tolerance: float = 0.0


class Group(_Strict):
    id: str
    members: int
    box: Box
    present: tuple[float, float]
    vending: bool = False
    note: str | None = None


class GroundTruth(_Strict):
    file: str
    format: Literal["cuhk_mall_heads"]


class ClipLabels(_Strict):
    version: Literal[1]
    clip: str
    frame_size: tuple[int, int]
    duration_s: float
    labelled: str
    notes: str | None = None
    vehicles: list[Vehicle] = []
    zones: list[LabelZone] = []
    regions: list[Region] = []
    person_counts: list[PersonCount] = []
    groups: list[Group] = []
    ground_truth: GroundTruth | None = None

    @property
    def stem(self) -> str:
        return Path(self.clip).stem

    def region_points(self, name: str) -> list[tuple[float, float]]:
        if name == "full":
            return FULL_FRAME
        for r in self.regions:
            if r.name == name:
                return r.points
        raise KeyError(f"{self.clip}: person_counts names unknown region {name!r}")

    def counts(self, media_dir: Path) -> list[PersonCount]:
        """Person counts to score: the labelled ones, or every frame of the clip's own ground truth."""
        if self.ground_truth is None:
            return list(self.person_counts)
        data = json.loads((media_dir / self.ground_truth.file).read_text())
        fps = float(data["video_fps"])
        # video frame k (0-based) = dataset frame k+1; its time on the file's clock is k / fps
        return [PersonCount(t=(int(f["frame"]) - 1) / fps, count=int(f["count"])) for f in data["frames"]]


def load_labels(path: Path) -> ClipLabels:
    try:
        return ClipLabels.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except (yaml.YAMLError, ValidationError) as e:
        raise SystemExit(f"{path}: invalid label file: {e}") from None


def all_labels(labels_dir: Path = LABELS_DIR) -> list[ClipLabels]:
    return [load_labels(p) for p in sorted(labels_dir.glob("*.yaml"))]
