"""OpenVINO Runtime back end for the YOLO ONNX exports (``detector.runtime: openvino``).

The same ``.onnx`` file, metadata and output decoding as ONNX Runtime (``edge.detectors.yolo_onnx.OnnxYolo``);
only the forward pass differs. OpenVINO reads the ONNX file directly (no conversion step, no cache needed), and
the input conversion is compiled into the model with its ``PrePostProcessor``: the model takes the letterboxed
uint8 BGR frames as ``[1, H, W, 3]`` and does BGR→RGB, NHWC→NCHW and /255 itself, so the Python side only
resizes into a reused canvas.

The ultralytics exports have a fixed batch of 1 (their attention reshapes hard-code it, so the model cannot be
reshaped to a dynamic batch); a batch of frames runs as consecutive requests. ``streams`` > 1 runs that many
requests in parallel (OpenVINO's throughput mode, one thread each) instead of one request on ``threads`` threads;
see docs/benchmarks.md for which is faster here.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from edge.detectors.base import DetectorError

log = logging.getLogger(__name__)


class OpenVinoRunner:
    runtime = "openvino"
    takes_uint8 = True

    def __init__(self, model_path: Path, threads: int = 0, streams: int = 1) -> None:
        try:
            import openvino as ov
        except ImportError:
            raise DetectorError(
                "detector.runtime openvino needs the openvino package: pip install openvino "
                "(or set detector.runtime: onnxruntime)"
            ) from None
        self._ov = ov
        self.core = ov.Core()
        try:
            self.model = self.core.read_model(str(model_path))
        except Exception as e:  # OpenVINO raises RuntimeError subclasses with long messages
            raise DetectorError(f"cannot load ONNX model {model_path} with OpenVINO: {str(e).strip()[:300]}") from None
        if len(self.model.inputs) != 1:
            raise DetectorError(f"{model_path.name}: expected one image input, got {len(self.model.inputs)}")
        self.model_path = model_path
        self.threads = threads or min(2, os.cpu_count() or 1)
        self.streams = max(1, streams)
        pshape = self.model.input().get_partial_shape()
        self.input_shape = [d.get_length() if d.is_static else -1 for d in pshape]
        out = self.model.output().get_partial_shape()
        self.output_shape = [d.get_length() if d.is_static else -1 for d in out]
        self._requests: list = []
        self._queue = None

    def prepare(self, input_hw: tuple[int, int]) -> None:
        """Fix the input to [1, 3, H, W], compile the uint8 BGR NHWC → float32 RGB NCHW conversion into it."""
        from openvino.preprocess import ColorFormat, PrePostProcessor

        ov = self._ov
        h, w = input_hw
        if self.input_shape != [1, 3, h, w]:
            try:
                self.model.reshape({self.model.input(): ov.PartialShape([1, 3, h, w])})
            except Exception as e:
                raise DetectorError(f"{self.model_path.name}: cannot set the input to 1x3x{h}x{w}: {e}") from None
        ppp = PrePostProcessor(self.model)
        ppp.input().tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC")).set_color_format(
            ColorFormat.BGR)
        ppp.input().model().set_layout(ov.Layout("NCHW"))
        ppp.input().preprocess().convert_element_type(ov.Type.f32).convert_color(ColorFormat.RGB).scale(255.0)
        model = ppp.build()
        self.output_shape = [d.get_length() if d.is_static else -1 for d in model.output().get_partial_shape()]
        if self.streams == 1:
            config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": self.threads, "NUM_STREAMS": 1}
        else:
            config = {"PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": self.streams,
                      "INFERENCE_NUM_THREADS": max(self.threads, self.streams)}
        try:
            self.compiled = self.core.compile_model(model, "CPU", config)
        except Exception as e:
            raise DetectorError(f"{self.model_path.name}: OpenVINO cannot compile the model: {e}") from None
        if self.streams == 1:
            self._requests = [self.compiled.create_infer_request()]
        else:
            self._queue = ov.AsyncInferQueue(self.compiled, self.streams)
        log.info("%s: OpenVINO %s on CPU, %d thread(s), %d stream(s)", self.model_path.name, ov.get_version(),
                 self.threads, self.streams)

    def run(self, batch: np.ndarray, dynamic_batch: bool = False) -> np.ndarray:
        """``batch``: [B, H, W, 3] uint8 BGR → the model's output for each image, concatenated on axis 0."""
        n = len(batch)
        if self._queue is None:
            req = self._requests[0]
            outs = []
            for i in range(n):
                req.infer({0: batch[i:i + 1]})
                outs.append(req.get_output_tensor(0).data.copy())
            return np.concatenate(outs) if n > 1 else outs[0]
        results: list[np.ndarray | None] = [None] * n

        def done(request, index: int) -> None:
            results[index] = request.get_output_tensor(0).data.copy()

        self._queue.set_callback(done)
        for i in range(n):
            self._queue.start_async({0: batch[i:i + 1]}, i)
        self._queue.wait_all()
        return np.concatenate(results) if n > 1 else results[0]  # type: ignore[arg-type]
