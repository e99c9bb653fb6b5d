"""The writers of each export format: SavedModel, ONNX (with its metadata), LiteRT, and the int8 artifacts.

Each writes into the export's temporary folder and returns a runner (for the parity check) and its manifest entry.
"""

import contextlib
import json
import os
import warnings

from export.quantize import litert_int8, onnx_int8
from export.runtimes import LITERT_METADATA_PREFIX, ONNX_METADATA_KEYS, Runner, add_litert_metadata
from lacnn_zoo.errors import ZooError


class ExportError(ZooError):
    """The model could not be exported, or an exported artifact disagrees with Keras."""


def _brief(error):
    return f"{type(error).__name__}: {' '.join(str(error).split())[:300]}"


def _rename_onnx_output(path, new_name):
    import onnx

    proto = onnx.load(path)
    graph = proto.graph
    if len(graph.output) != 1:
        raise ExportError(f"Expected one ONNX output, found {len(graph.output)}.")
    old = graph.output[0].name
    for node in graph.node:
        node.output[:] = [new_name if o == old else o for o in node.output]
        node.input[:] = [new_name if i == old else i for i in node.input]
    graph.output[0].name = new_name
    onnx.save(proto, path)
    onnx.checker.check_model(path)


def _add_onnx_metadata(path, **entries):
    """Record deployment facts (class names, preprocessing) as ONNX metadata_props, JSON-encoded (`onnx.helper.
    set_model_props`); a key already there is replaced, never duplicated."""
    import onnx

    proto = onnx.load(path)
    props = {p.key: p.value for p in proto.metadata_props}
    props.update({key: json.dumps(value) for key, value in entries.items() if value is not None})
    onnx.helper.set_model_props(proto, props)
    onnx.save(proto, path)


def _write_saved_model(model, path, spec, output_name):
    import keras

    archive = keras.export.ExportArchive()
    archive.track(model)

    def serve(images):
        return {output_name: model(images, training=False)}

    archive.add_endpoint(name="serve", fn=serve, input_signature=[spec])
    archive.write_out(path, verbose=False)


def _write_litert(model, path, spec, output):
    import tensorflow as tf

    try:
        # Builtin operators only: the file must run on the plain LiteRT interpreter (ai-edge-litert), which has
        # no TensorFlow (Flex) kernels.
        model.export(path, format="litert", input_signature=[spec], verbose=False,
                     target_spec={"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS]})
    except Exception as e:  # the converter fails in many ways; all mean "not convertible with builtin ops"
        raise ExportError(
            f"The LiteRT converter could not convert {model.name!r} with builtin operators ({type(e).__name__}: "
            f"{' '.join(str(e).split())[:300]}). The SavedModel export (--format saved_model) has no such limit."
        ) from e


@contextlib.contextmanager
def _no_np_object_warning():
    """Keras' tf2onnx shim probes `hasattr(np, "object")` on its first ONNX export, which NumPy 2 answers with a
    FutureWarning on every export; only that warning is silenced, and only here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"In the future `np\.object` will be defined",
                                category=FutureWarning)
        yield




def write_saved_model(model, tmp, spec, output):
    import tensorflow as tf

    _write_saved_model(model, os.path.join(tmp, "saved_model"), spec, output)
    loaded = tf.saved_model.load(os.path.join(tmp, "saved_model"))
    runner = lambda x: loaded.serve(tf.constant(x))[output].numpy()  # noqa: E731
    return runner, {"path": "saved_model", "endpoint": "serve", "signature": "serving_default", "output_key": output}


def write_onnx(model, tmp, spec, output, opset, metadata):
    onnx_path = os.path.join(tmp, "model.onnx")
    try:
        with _no_np_object_warning():
            model.export(onnx_path, format="onnx", opset_version=opset, input_signature=[spec], verbose=False)
        _rename_onnx_output(onnx_path, output)
    except Exception as e:  # tf2onnx and the ONNX checker fail in many ways; all mean "not convertible"
        raise ExportError(
            f"tf2onnx could not convert {model.name!r} to ONNX ({_brief(e)}). Known limits: grouped convolutions "
            "and exact GELU (ConvNeXt). The SavedModel export (--format saved_model) has no such limit."
        ) from e
    _add_onnx_metadata(onnx_path, **metadata)
    # The session options of the deploy snippet.
    return Runner(onnx_path), {"path": "model.onnx", "opset": opset, "metadata_props": ONNX_METADATA_KEYS}


def write_litert(model, tmp, spec, output, metadata):
    litert_path = os.path.join(tmp, "model.tflite")
    _write_litert(model, litert_path, spec, output)
    add_litert_metadata(litert_path, **metadata)
    runner = Runner(litert_path)  # ai_edge_litert's Interpreter, as in the deploy snippet
    return runner, {
        "path": "model.tflite", "signature": "serving_default", "input_key": runner.input_name,
        "output_key": runner.output_name, "runtime": "ai_edge_litert.interpreter.Interpreter",
        "metadata": [LITERT_METADATA_PREFIX + k for k in ONNX_METADATA_KEYS],
    }


def write_int8(model, tmp, spec, formats, calibration_x, metadata):
    """The int8 artifacts of the asked formats; returns {key: file name}."""
    artifacts = {}
    if "onnx" in formats:
        onnx_int8(os.path.join(tmp, "model.onnx"), os.path.join(tmp, "model_int8.onnx"), calibration_x)
        _add_onnx_metadata(os.path.join(tmp, "model_int8.onnx"), **metadata)
        artifacts["onnx_int8"] = "model_int8.onnx"
    if "litert" in formats:
        try:
            litert_int8(model, os.path.join(tmp, "model_int8.tflite"), spec, calibration_x)
        except Exception as e:
            raise ExportError(f"The LiteRT converter could not quantise {model.name!r} to int8 ({_brief(e)}). "
                              "Nothing was written.") from e
        add_litert_metadata(os.path.join(tmp, "model_int8.tflite"), **metadata)
        artifacts["litert_int8"] = "model_int8.tflite"
    return artifacts
