"""Running exported artifacts without TensorFlow: onnxruntime and LiteRT sessions configured on purpose,
and the deployment metadata read back from the artifact files themselves.

Nothing here imports TensorFlow or Keras (but `open_saved_model`, when called): the validation command, the
benchmark's worker processes and the README's deploy snippets use the same settings:

- onnxruntime: `intra_op_num_threads` = physical cores (the work of one call is split over the cores),
  `inter_op_num_threads` = 1 with sequential execution (these graphs are one chain of operators: a second pool
  would only compete for the same cores), `ORT_ENABLE_ALL` graph optimisation (constant folding, operator
  fusion and the NCHWc layout transformation of convolutions that the AVX-512 kernels need).
- LiteRT: `ai_edge_litert.interpreter.Interpreter` with `num_threads` = physical cores (XNNPACK delegate, the
  default), called through the model's `serving_default` signature, which resizes to each batch size.
"""

import json
import os

import numpy as np

from export.table import artifact_format

ONNX_METADATA_KEYS = ("class_names", "preprocessing")
# Names of the entries written into the LiteRT flatbuffer's `metadata` table (JSON, UTF-8).
LITERT_METADATA_PREFIX = "lacnn_zoo."


def physical_cores():
    """Physical CPU cores this process may use (hyper-threads share one core's vector units)."""
    try:
        import psutil

        cores = psutil.cpu_count(logical=False)
    except ImportError:
        cores = None
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(cores or available or 1, available or 1))


def onnx_session(path, threads=None, profile_prefix=None):
    """An onnxruntime CPU session with the options the zoo recommends (see the module docstring)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or physical_cores()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if profile_prefix:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    return ort.InferenceSession(os.fspath(path), sess_options=options, providers=["CPUExecutionProvider"])


def litert_interpreter(path, threads=None):
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_path=os.fspath(path), num_threads=threads or physical_cores())


# The runners of the formats (`export.table`): `(path, threads=None) -> (input name, output name, call)`.

def open_onnx(path, threads=None):
    session = onnx_session(path, threads)
    input_name, output_name = session.get_inputs()[0].name, session.get_outputs()[0].name
    return input_name, output_name, lambda x: session.run([output_name], {input_name: x})[0]


def open_litert(path, threads=None):
    interpreter = litert_interpreter(path, threads)
    runner = interpreter.get_signature_runner("serving_default")
    signature = interpreter.get_signature_list()["serving_default"]
    input_name, output_name = signature["inputs"][0], signature["outputs"][0]
    return input_name, output_name, lambda x: runner(**{input_name: x})[output_name]


def open_saved_model(path, threads=None):
    """The SavedModel's `serve` endpoint, run by TensorFlow itself (imported here, at the call; `threads` is
    TensorFlow's to choose)."""
    import tensorflow as tf

    loaded = tf.saved_model.load(os.fspath(path))
    signature = loaded.signatures["serving_default"]
    input_name = next(iter(signature.structured_input_signature[1]))
    output = next(iter(signature.structured_outputs))
    return input_name, output, lambda x: loaded.serve(tf.constant(x))[output].numpy()


def profiled_onnx(path, threads, profile_prefix):
    """`call(x)` on an onnxruntime session that profiles every operator; `call.end_profiling()` writes the profile."""
    session = onnx_session(path, threads, profile_prefix=profile_prefix)
    name = session.get_inputs()[0].name

    def call(x):
        return session.run(None, {name: x})[0]

    call.end_profiling = session.end_profiling
    return call


class Runner:
    """`runner(x) -> outputs` for an artifact file of a format (`.onnx`, `.tflite`: `export.table`);
    `runner.metadata` holds what travels in it."""

    def __init__(self, path, threads=None):
        self.path = os.fspath(path)
        fmt = artifact_format(self.path)  # ValueError for another file
        self.kind = fmt.runtime
        try:
            self.input_name, self.output_name, self._call = fmt.load("runner")(self.path, threads)
        except ValueError:
            raise
        except Exception as e:  # onnxruntime and LiteRT raise their own types for a damaged file
            text = " ".join(str(e).split())[:200]
            raise ValueError(f"{self.path!r} cannot be loaded as an {os.path.splitext(self.path)[1]} model "
                             f"(damaged or not one: {type(e).__name__}: {text}).") from None
        self.metadata = read_metadata(self.path)

    def __call__(self, x):
        return self._call(np.ascontiguousarray(x, dtype=np.float32))


def _json_entry(text, key, path):
    try:
        return json.loads(text)
    except (ValueError, UnicodeDecodeError):
        raise ValueError(f"The {key!r} metadata inside {path!r} is not JSON; the artifact is damaged.") from None


def read_metadata(path):
    """The class names and preprocessing recorded inside an artifact file: an .onnx file's metadata_props, a
    .tflite file's metadata (the format's `metadata_reader`, `export.table`)."""
    path = os.fspath(path)
    return artifact_format(path).load("metadata_reader")(path)


def read_onnx_metadata(path):
    import onnx

    try:
        props = {p.key: p.value for p in onnx.load(path, load_external_data=False).metadata_props}
    except Exception as e:  # onnx raises DecodeError, InvalidProtobuf and others for a damaged file
        raise ValueError(f"{path!r} is not a readable ONNX model ({type(e).__name__}); it is damaged or "
                         "not an ONNX file.") from None
    return {k: _json_entry(props[k], k, path) for k in ONNX_METADATA_KEYS if k in props}


def read_litert_metadata(path):
    from ai_edge_litert import schema_py_generated as schema

    with open(path, "rb") as f:
        buffer = f.read()
    model = schema.Model.GetRootAs(buffer, 0)
    found = {}
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        name = entry.Name().decode()
        if name.startswith(LITERT_METADATA_PREFIX):
            data = model.Buffers(entry.Buffer()).DataAsNumpy().tobytes()
            key = name[len(LITERT_METADATA_PREFIX):]
            found[key] = _json_entry(data, key, path)
    return found


def add_litert_metadata(path, **entries):
    """Write JSON entries into the `metadata` table of a .tflite flatbuffer (named `lacnn_zoo.<key>`)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    with open(path, "rb") as f:
        model = schema.ModelT.InitFromPackedBuf(f.read(), 0)
    model.metadata = list(model.metadata or [])
    model.buffers = list(model.buffers or [])
    for key, value in entries.items():
        if value is None:
            continue
        buffer = schema.BufferT()
        buffer.data = np.frombuffer(json.dumps(value).encode(), dtype=np.uint8)
        model.buffers.append(buffer)
        metadata = schema.MetadataT()
        metadata.name = LITERT_METADATA_PREFIX + key
        metadata.buffer = len(model.buffers) - 1
        model.metadata.append(metadata)
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    with open(path, "wb") as f:
        f.write(builder.Output())
