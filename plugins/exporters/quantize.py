"""Smaller ONNX files from a float one: int8 (onnxruntime's quantization) and fp16 (its float16 tool).

int8 is static quantization when calibration batches are given: onnxruntime runs the float model
over them (a ``CalibrationDataReader``) to fix each activation's range, and writes QDQ pairs with
int8 weights (per output channel) and uint8 activations, which its CPU provider runs as integer
kernels. Without calibration images it is dynamic quantization: int8 weights, activation ranges
computed at run time, for MatMul/Gemm only (onnxruntime's dynamic Conv kernel is slower than float).
fp16 converts weights and arithmetic to float16 and keeps the uint8 input and float32 outputs: a
file for GPUs (onnxruntime's CPU provider runs most float16 operators through float32 casts).
Both keep the float file's metadata. The ONNX exporter imports this module only to convert.
"""
import os

import numpy as np
from onnxruntime.quantization import CalibrationDataReader

PRECISIONS = ("int8", "fp16")
# Operators left in float: the task's activation at the end (softmax, sigmoid) must keep the
# precision of the probabilities people threshold and rank.
FLOAT_OPS = ("Softmax", "Sigmoid")


def convert(src, dst, precision, calibration=None):
    """Write ``src`` (a float .onnx) at ``precision`` to ``dst`` -> facts for export's summary.

    ``calibration``: uint8 N x 3 x S x S batches (numpy) for int8's static quantization; None or
    empty -> dynamic quantization.
    """
    import onnx

    metadata = {p.key: p.value for p in onnx.load(str(src), load_external_data=False).metadata_props}
    if precision == "int8":
        info = _int8(src, dst, calibration)
    elif precision == "fp16":
        info = _fp16(src, dst)
    else:
        raise ValueError(f"precision '{precision}': use one of {', '.join(PRECISIONS)}")
    model = onnx.load(str(dst))
    del model.metadata_props[:]
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(dst))
    return {"precision": precision, **info}


def _int8(src, dst, calibration):
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    batches = [np.ascontiguousarray(b, dtype=np.uint8) for b in calibration or ()]
    if not batches:
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"])
        return {"method": "dynamic", "calibration_images": 0}
    prepared = f"{dst}.pre.onnx"
    try:
        quant_pre_process(str(src), prepared, skip_symbolic_shape=True)  # folds and fuses before ranges are taken
        quantize_static(prepared, str(dst), _Batches(_input_name(src), batches), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                        nodes_to_exclude=_float_nodes(prepared))
    finally:
        for leftover in (prepared, f"{dst}.pre.onnx.data"):
            if os.path.exists(leftover):
                os.remove(leftover)
    return {"method": "static", "calibration_images": int(sum(len(b) for b in batches))}


def _fp16(src, dst):
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    onnx.save(model, str(dst))
    return {"method": "float16"}


def _input_name(path):
    import onnx

    return onnx.load(str(path), load_external_data=False).graph.input[0].name


def _float_nodes(path):
    import onnx

    return [n.name for n in onnx.load(str(path)).graph.node if n.op_type in FLOAT_OPS]


class _Batches(CalibrationDataReader):
    """The calibration batches as onnxruntime's calibrator reads them: one input feed at a time."""

    def __init__(self, name, batches):
        self.feeds = iter([{name: b} for b in batches])

    def get_next(self):
        return next(self.feeds, None)
