"""The writers of each export format: SavedModel, ONNX (with its metadata), LiteRT, and the int8 artifacts;
`export.table` names them, with the files they write.

Each writes into the export's temporary folder and returns a runner (for the parity check) and its manifest entry.
"""

import contextlib
import json
import os
import warnings

from export.quantize import litert_int8, onnx_int8
from export.runtimes import LITERT_METADATA_PREFIX, ONNX_METADATA_KEYS, Runner, add_litert_metadata
from export.table import EXPORT_FORMATS, quantizable
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




# The writers of the formats (`export.table`): `(model, tmp, spec, output, *, opset, metadata) -> (runner, entry)`.

def write_saved_model(model, tmp, spec, output, *, opset=None, metadata=None):
    import tensorflow as tf

    name = EXPORT_FORMATS["saved_model"].artifact
    _write_saved_model(model, os.path.join(tmp, name), spec, output)
    loaded = tf.saved_model.load(os.path.join(tmp, name))
    runner = lambda x: loaded.serve(tf.constant(x))[output].numpy()  # noqa: E731
    return runner, {"path": name, "endpoint": "serve", "signature": "serving_default", "output_key": output}


def write_onnx(model, tmp, spec, output, opset, metadata):
    name = EXPORT_FORMATS["onnx"].artifact
    onnx_path = os.path.join(tmp, name)
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
    return Runner(onnx_path), {"path": name, "opset": opset, "metadata_props": ONNX_METADATA_KEYS}


def write_litert(model, tmp, spec, output, metadata, *, opset=None):
    name = EXPORT_FORMATS["litert"].artifact
    litert_path = os.path.join(tmp, name)
    _write_litert(model, litert_path, spec, output)
    add_litert_metadata(litert_path, **metadata)
    runner = Runner(litert_path)  # ai_edge_litert's Interpreter, as in the deploy snippet
    return runner, {
        "path": name, "signature": "serving_default", "input_key": runner.input_name,
        "output_key": runner.output_name, "runtime": "ai_edge_litert.interpreter.Interpreter",
        "metadata": [LITERT_METADATA_PREFIX + k for k in ONNX_METADATA_KEYS],
    }


# The int8 writers: `(model, tmp, spec, calibration_x, metadata) -> None`, beside the format's float32 artifact.

def write_onnx_int8(model, tmp, spec, calibration_x, metadata):
    fmt = EXPORT_FORMATS["onnx"]
    onnx_int8(os.path.join(tmp, fmt.artifact), os.path.join(tmp, fmt.int8_artifact), calibration_x)
    _add_onnx_metadata(os.path.join(tmp, fmt.int8_artifact), **metadata)


def write_litert_int8(model, tmp, spec, calibration_x, metadata):
    path = os.path.join(tmp, EXPORT_FORMATS["litert"].int8_artifact)
    try:
        litert_int8(model, path, spec, calibration_x)
    except Exception as e:
        raise ExportError(f"The LiteRT converter could not quantise {model.name!r} to int8 ({_brief(e)}). "
                          "Nothing was written.") from e
    add_litert_metadata(path, **metadata)


def write_int8(model, tmp, spec, formats, calibration_x, metadata):
    """The int8 artifacts of the asked formats; returns {key: file name}."""
    artifacts = {}
    for fmt in quantizable():
        if fmt.name in formats:
            fmt.load("int8_writer")(model, tmp, spec, calibration_x, metadata)
            artifacts[fmt.int8_key] = fmt.int8_artifact
    return artifacts


# The version probes: `() -> {package: version}`, for the manifest.

def onnx_versions():
    import onnx
    import onnxruntime
    import tf2onnx

    return {"tf2onnx": tf2onnx.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}


def litert_versions():
    import importlib.metadata

    return {"ai-edge-litert": importlib.metadata.version("ai-edge-litert")}
