"""int8 artifacts: onnxruntime static QDQ quantisation and LiteRT full-integer quantisation, both calibrated
on training images with the run's preprocessing, and judged by top-1 accuracy on the test split (not parity).

Dynamic quantisation (weights int8, activations quantised at run time) is deliberately not offered: on this
class of CPU it ran 7.7x slower than float32 onnxruntime for resnet20.
"""

import logging
import os

from export.options import DEFAULT_CALIBRATION_IMAGES, DEFAULT_MAX_ACCURACY_DROP, QUANTIZATIONS  # noqa: F401
from lacnn_zoo.data import load_dataset, restandardise
from lacnn_zoo.errors import spell


def onnx_int8(fp32_path, out_path, calibration_x, *, batch_size=16):
    """Static QDQ quantisation of an fp32 ONNX file: int8 weights per output channel, uint8 activations whose
    ranges are the min/max seen on `calibration_x` (MinMax calibration)."""
    import onnxruntime as ort
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    input_name = ort.InferenceSession(os.fspath(fp32_path), providers=["CPUExecutionProvider"]).get_inputs()[0].name

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{input_name: calibration_x[i:i + batch_size]}
                                 for i in range(0, len(calibration_x), batch_size)])

        def get_next(self):
            return next(self.batches, None)

    # uint8 activations with int8 weights (U8S8): onnxruntime's fast x86 kernels (VNNI) take this pair; int8
    # activations (S8S8) ran 1.5x SLOWER than float32 for resnet20 here, U8S8 3x faster.  On x86 CPUs without
    # VNNI, U8S8 can saturate: the accuracy gate is what catches that.  onnxruntime's quant_pre_process made
    # no difference to speed here and is skipped (it needs sympy for symbolic shapes).
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # quantize_static warns that quant_pre_process was not run (see above)
    try:
        quantize_static(
            os.fspath(fp32_path), os.fspath(out_path), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
        )
    finally:
        root.setLevel(level)


def litert_int8(model, out_path, spec, calibration_x):
    """LiteRT full-integer quantisation (int8 weights and activations, builtin int8 kernels only) with float32
    input and output, so the same deploy code runs the float32 and the int8 file."""
    import tensorflow as tf

    def representative_dataset():
        for i in range(len(calibration_x)):
            yield [calibration_x[i:i + 1]]

    model.export(
        os.fspath(out_path), format="litert", input_signature=[spec], verbose=False,
        optimizations=[tf.lite.Optimize.DEFAULT], representative_dataset=representative_dataset,
        target_spec={"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]},
    )


def load_quantization_data(dataset, *, seed=0, image_size=None, data_dir=None, calibration_images=None,
                           preprocessing=None, input_shape=None):
    """`(calibration_x, test_x, test_y, description)` from a data set, preprocessed as the model was trained.

    Calibration images are the first `calibration_images` of the training split (no augmentation); the test
    split is used whole. When the model's recorded standardisation differs from the data set's own (another
    data set at the same scale), inputs are re-standardised with the model's, as `lacnn-zoo evaluate` does.
    """
    options = {} if dataset == "digits" else dict(
        data_dir=data_dir, image_size=tuple(image_size) if image_size else None)
    data = load_dataset(dataset, seed=seed, batch_size=128, **options)
    if input_shape is not None and any(m is not None and m != d for m, d in zip(input_shape, data.input_shape)):
        raise ValueError(
            f"The model takes inputs of shape {tuple(input_shape)}, but {dataset!r} gives {tuple(data.input_shape)}; "
            f"pass the data set it was trained on ({spell('dataset', '--dataset')}) and its image size."
        )
    calibration_x, _ = data.arrays("train", calibration_images)
    test_x, test_y = data.arrays("test")
    recorded = preprocessing or {}
    if recorded.get("mean") is not None:  # the model's own preprocessing, applied to the raw pixels
        calibration_x, test_x = (restandardise(x, data.preprocessing, recorded) for x in (calibration_x, test_x))
    description = {"dataset": dataset, "seed": seed, "split": "test", "num_examples": int(len(test_y)),
                   "calibration_images": int(len(calibration_x)), "calibration_split": "train",
                   "calibration_images_asked": None if calibration_images is None else int(calibration_images)}
    return calibration_x, test_x, test_y, description
