"""The export formats, one record each: what `export`, `export.validate`, `export.bench` and `export.runtimes`
know of a format is read from `EXPORT_FORMATS`; adding a format is adding its record (and the code it names).

Free of Keras, TensorFlow and NumPy (the command-line parsers build from it, and the benchmark's onnxruntime and
LiteRT workers import it): the code a record names is a "module:function" path, imported only when used (a
callable is taken as it is).
"""

import dataclasses
import importlib
import os


@dataclasses.dataclass(frozen=True)
class Format:
    """One export format.

    name: the `--format` value, and the format's key in the manifest and the parity figures.
    title: the format's name in messages.
    artifact: the file (or folder) it writes into the export folder; a file's suffix (`.onnx`) is how
        `export.validate`, `export.runtimes.Runner` and `read_metadata` recognise an artifact of the format.
    writer: `(model, tmp, spec, output, *, opset, metadata) -> (runner, manifest entry)`, writing `artifact`.
    runtime: the name of the runner: `Runner.kind`, validate's "runtime", export.bench's runtime (and
        `<runtime>_int8` for the int8 artifact).
    runner: `(path, threads=None) -> (input name, output name, call)`; without TensorFlow for a file artifact.
    metadata_reader: `(path) -> {key: value}`: the deployment metadata recorded inside a file artifact.
    version_probe: `() -> {package: version}`, recorded in the manifest's "versions" when the format is written
        (every time with `versions_always`).
    int8_artifact, int8_writer, int8_method: the `--quantize int8` artifact, its writer
        `(model, tmp, spec, calibration_x, metadata) -> None` and the manifest's description of the method.
    profiler: `(path, threads, profile_prefix) -> call` with `call.end_profiling()`, for `export.bench --profile`.
    options: command-line options that take effect only with this format (refused with the others).
    """

    name: str
    title: str
    artifact: str
    writer: object
    runtime: str
    runner: object
    metadata_reader: object = None
    version_probe: object = None
    versions_always: bool = False
    int8_artifact: str | None = None
    int8_writer: object = None
    int8_method: str | None = None
    profiler: object = None
    options: tuple = ()

    @property
    def suffix(self):
        """The artifact's file suffix (".onnx"), or "" for a folder artifact."""
        return os.path.splitext(self.artifact)[1]

    @property
    def int8_key(self):
        """The int8 artifact's key in the manifest ("onnx_int8"), or None."""
        return f"{self.name}_int8" if self.int8_writer else None

    @property
    def int8_runtime(self):
        """The int8 artifact's runtime in export.bench ("onnxruntime_int8"), or None."""
        return f"{self.runtime}_int8" if self.int8_writer else None

    def load(self, field):
        """The callable a field names (imported now), or None."""
        target = getattr(self, field)
        if target is None or callable(target):
            return target
        module, _, name = target.partition(":")
        return getattr(importlib.import_module(module), name)


# In the order they are written, checked, listed in the manifest and benchmarked.
EXPORT_FORMATS = {fmt.name: fmt for fmt in (
    Format(
        name="saved_model", title="SavedModel", artifact="saved_model", writer="export.formats:write_saved_model",
        runtime="saved_model", runner="export.runtimes:open_saved_model",
    ),
    Format(
        name="onnx", title="ONNX", artifact="model.onnx", writer="export.formats:write_onnx",
        runtime="onnxruntime", runner="export.runtimes:open_onnx", metadata_reader="export.runtimes:read_onnx_metadata",
        version_probe="export.formats:onnx_versions", versions_always=True,
        int8_artifact="model_int8.onnx", int8_writer="export.formats:write_onnx_int8",
        int8_method="onnxruntime quantize_static: QDQ, int8 weights per channel (symmetric), uint8 activations, MinMax",
        profiler="export.runtimes:profiled_onnx", options=("--opset",),
    ),
    Format(
        name="litert", title="LiteRT", artifact="model.tflite", writer="export.formats:write_litert",
        runtime="litert", runner="export.runtimes:open_litert", metadata_reader="export.runtimes:read_litert_metadata",
        version_probe="export.formats:litert_versions",
        int8_artifact="model_int8.tflite", int8_writer="export.formats:write_litert_int8",
        int8_method="LiteRT full-integer: int8 builtin kernels only, float32 input and output",
    ),
)}


def artifact_kinds():
    """The artifact files a runner opens without TensorFlow, for messages: ".onnx or .tflite"."""
    return " or ".join(fmt.suffix for fmt in EXPORT_FORMATS.values() if fmt.suffix)


def artifact_format(path):
    """The format of an artifact file (its int8 variant included), by its suffix; ValueError for another file."""
    path = os.fspath(path)
    for fmt in EXPORT_FORMATS.values():
        if fmt.suffix and path.endswith(fmt.suffix):
            return fmt
    raise ValueError(f"`artifact` must be an {artifact_kinds()} file; received {path!r}.")


def export_entries():
    """What an export folder may hold: every format's artifacts and the manifest."""
    return frozenset({*(f.artifact for f in EXPORT_FORMATS.values()),
                      *(f.int8_artifact for f in EXPORT_FORMATS.values() if f.int8_artifact), "manifest.json"})


def quantizable():
    """The formats with an int8 artifact, in the table's order."""
    return tuple(fmt for fmt in EXPORT_FORMATS.values() if fmt.int8_writer)


def runtime_artifacts():
    """`{runtime: artifact}` of export.bench's runtimes of the formats (each int8 one after its format's)."""
    found = {}
    for fmt in EXPORT_FORMATS.values():
        found[fmt.runtime] = fmt.artifact
        if fmt.int8_writer:
            found[fmt.int8_runtime] = fmt.int8_artifact
    return found


def runtime_format(runtime):
    """The format whose runner export.bench's `runtime` is (its int8 one included), or None."""
    for fmt in EXPORT_FORMATS.values():
        if runtime == fmt.runtime or (fmt.int8_writer and runtime == fmt.int8_runtime):
            return fmt
    return None
