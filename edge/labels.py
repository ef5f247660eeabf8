"""Class-name tables for the detectors we ship support for.

COCO_91 is the TensorFlow Object Detection API label map used by SSD MobileNet V2 COCO
(ids 1..90 with gaps); COCO_80 is the contiguous 80-class list used by ultralytics YOLO.
"""

from __future__ import annotations

COCO_80: list[str] = [
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant",
    "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
]  # fmt: skip

# TF OD API ids that are missing from the 91-id map (the 80 classes fill the rest in order).
_COCO_91_GAPS = {12, 26, 29, 30, 45, 66, 68, 69, 71, 83}


def _coco_91() -> dict[int, str]:
    ids = [i for i in range(1, 91) if i not in _COCO_91_GAPS]
    return dict(zip(ids, COCO_80, strict=True))


COCO_91: dict[int, str] = _coco_91()


# Classes a detector confuses on the same object from frame to frame (SSD calls one van "car", then "truck"):
# a track may continue across them, and size models and duplicate merging treat them as one. Other classes
# form a family of their own.
CLASS_FAMILIES = {"car": "vehicle", "truck": "vehicle", "bus": "vehicle"}


def class_family(class_name: str) -> str:
    return CLASS_FAMILIES.get(str(class_name), str(class_name))
