"""Running exported artifacts without TensorFlow: onnxruntime and LiteRT sessions configured on purpose,
and the deployment metadata read back from the artifact files themselves.

Nothing here imports TensorFlow or Keras: the validation command, the benchmark's worker processes and the
README's deploy snippets use the same settings:

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


class Runner:
    """`runner(x) -> outputs` for an `.onnx` or `.tflite` artifact; `runner.metadata` holds what travels in it."""

    def __init__(self, path, threads=None):
        self.path = os.fspath(path)
        try:
            self._open(threads)
        except ValueError:
            raise
        except Exception as e:  # onnxruntime and LiteRT raise their own types for a damaged file
            text = " ".join(str(e).split())[:200]
            raise ValueError(f"{self.path!r} cannot be loaded as an {os.path.splitext(self.path)[1]} model "
                             f"(damaged or not one: {type(e).__name__}: {text}).") from None
        self.metadata = read_metadata(self.path)

    def _open(self, threads):
        if self.path.endswith(".onnx"):
            self.kind = "onnxruntime"
            self.session = onnx_session(self.path, threads)
            self.input_name = self.session.get_inputs()[0].name
            self.output_name = self.session.get_outputs()[0].name
        elif self.path.endswith(".tflite"):
            self.kind = "litert"
            self.interpreter = litert_interpreter(self.path, threads)
            self.signature = self.interpreter.get_signature_runner("serving_default")
            signature = self.interpreter.get_signature_list()["serving_default"]
            self.input_name = signature["inputs"][0]
            self.output_name = signature["outputs"][0]
        else:
            raise ValueError(f"`artifact` must be an .onnx or .tflite file; received {self.path!r}.")

    def __call__(self, x):
        x = np.ascontiguousarray(x, dtype=np.float32)
        if self.kind == "onnxruntime":
            return self.session.run([self.output_name], {self.input_name: x})[0]
        return self.signature(**{self.input_name: x})[self.output_name]


def _json_entry(text, key, path):
    try:
        return json.loads(text)
    except (ValueError, UnicodeDecodeError):
        raise ValueError(f"The {key!r} metadata inside {path!r} is not JSON; the artifact is damaged.") from None


def read_metadata(path):
    """The class names and preprocessing recorded inside an .onnx (metadata_props) or .tflite (metadata) file."""
    path = os.fspath(path)
    if path.endswith(".onnx"):
        import onnx

        try:
            props = {p.key: p.value for p in onnx.load(path, load_external_data=False).metadata_props}
        except Exception as e:  # onnx raises DecodeError, InvalidProtobuf and others for a damaged file
            raise ValueError(f"{path!r} is not a readable ONNX model ({type(e).__name__}); it is damaged or "
                             "not an ONNX file.") from None
        return {k: _json_entry(props[k], k, path) for k in ONNX_METADATA_KEYS if k in props}
    if path.endswith(".tflite"):
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
    raise ValueError(f"`artifact` must be an .onnx or .tflite file; received {path!r}.")


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
