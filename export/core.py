"""Export a trained zoo model to SavedModel, ONNX and LiteRT, verified against Keras; int8 by accuracy.

The artifacts are written into a temporary folder beside the destination and
renamed into place only once every format has been written, reloaded and
checked; a failed export leaves nothing behind, and an existing destination is
replaced only with `overwrite=True`.

Layout of the output folder:

    model.onnx        ONNX graph, input `images` (NHWC float32), output `logits` or `probabilities`
    saved_model/      TensorFlow SavedModel, endpoint `serve` / signature `serving_default`
    model.tflite      LiteRT flatbuffer (builtin ops only), signature `serving_default`
    model_int8.onnx   with --quantize int8: static QDQ onnxruntime model, checked by top-1 accuracy
    model_int8.tflite with --quantize int8: full-integer LiteRT model, checked by top-1 accuracy
    manifest.json     what a deployment needs: names, shapes, preprocessing, opset, versions, parity
"""

import json
import os
import platform
import shutil
import tempfile

import numpy as np

from export.formats import ExportError, write_int8
from export.options import FORMAT_SETS, FORMATS, OUTPUTS  # noqa: E402, F401  (Keras-free, for the parsers)
from export.preparing import load_trained_model, prepared_model
from export.quantize import (
    DEFAULT_CALIBRATION_IMAGES,
    DEFAULT_MAX_ACCURACY_DROP,
    QUANTIZATIONS,
    load_quantization_data,
)
from export.runtimes import Runner
from export.table import EXPORT_FORMATS, export_entries, quantizable
from lacnn_zoo.data import refuse_on_digits
from lacnn_zoo.errors import spell
from lacnn_zoo.io import FolderLock, check_replaceable, is_disk_full, mark_owned, swap_into_place, unwritable
from lacnn_zoo.options import check_bounded
from lacnn_zoo.training import RunFolder, top1

INPUT_NAME = "images"
MIN_OPSET, MAX_OPSET = 13, 18


PARITY_RULE = "per sample: max |export - keras| <= atol + rtol * max |keras| (rtol relative to the output's scale)"


def _parity(model, runners, input_shapes, batch_sizes, rtol, atol, seed):
    """Largest |difference| to Keras of each runner, per batch size; ExportError beyond tolerance.

    rtol is taken relative to each sample's output scale (its largest |logit|),
    not element by element: float32 rounding accumulated over a deep network is
    proportional to the activations' scale, so an element-wise rule would turn
    rtol into atol for every logit near zero.  A wrong conversion (a BN folded
    wrongly, channels scrambled) errs by the order of the scale and still fails.
    """
    rng = np.random.default_rng(seed)
    figures = {name: {} for name in runners}
    for shape in input_shapes:
        for batch in batch_sizes:
            x = rng.normal(size=(batch, *shape)).astype("float32")
            expected = np.asarray(model(x, training=False))
            scale = np.max(np.abs(expected.reshape(batch, -1)), axis=1)
            for name, run in runners.items():
                got = np.asarray(run(x))
                if got.shape != expected.shape:
                    raise ExportError(f"{name} output shape {got.shape} differs from Keras' {expected.shape}.")
                per_sample = np.max(np.abs(got - expected).reshape(batch, -1), axis=1)
                diff = float(np.max(per_sample))
                key = f"{batch}" if len(input_shapes) == 1 else f"{batch}@{shape[0]}x{shape[1]}"
                figures[name][key] = diff
                if not np.all(per_sample <= atol + rtol * scale):
                    raise ExportError(
                        f"{name} disagrees with the Keras model at batch {batch}, input {shape}: largest "
                        f"|difference| {diff:.3g} exceeds atol={atol} + rtol={rtol} x output scale "
                        f"{float(np.max(scale)):.3g}. Nothing was written."
                    )
    return figures


def _versions(formats=()):
    """Keras', TensorFlow's, NumPy's and Python's versions, and those of each format's tools (`export.table`: its
    `version_probe`, for the formats written, or for every export with `versions_always`)."""
    import keras
    import tensorflow as tf

    probes = [fmt for fmt in EXPORT_FORMATS.values() if fmt.version_probe]
    versions = {"keras": keras.__version__, "tensorflow": tf.__version__}
    for fmt in probes:
        if fmt.versions_always:
            versions.update(fmt.load("version_probe")())
    versions.update(numpy=np.__version__, python=platform.python_version())
    for fmt in probes:
        if fmt.name in formats and not fmt.versions_always:
            versions.update(fmt.load("version_probe")())
    return versions


def export_model(
    source,
    out_dir,
    *,
    format="both",
    opset=17,
    output="logits",
    dynamic_size=False,
    overwrite=False,
    verify=True,
    batch_sizes=(1, 7, 32),
    rtol=1e-4,
    atol=1e-5,
    preprocessing=None,
    seed=0,
    quantize=None,
    dataset=None,
    data_dir=None,
    calibration_images=DEFAULT_CALIBRATION_IMAGES,
    max_accuracy_drop=DEFAULT_MAX_ACCURACY_DROP,
    quantization_data=None,
):
    """Export a trained model; returns the manifest (also written as `manifest.json`).

    Args:
        source: path of a `.keras` file, or a `keras.Model`.
        out_dir: destination folder (created, or filled when it is an empty folder; a folder the zoo exported
            into before is replaced only with `overwrite`).
        format: "onnx", "saved_model", "litert", "both" (onnx + saved_model) or "all" (the three).
        opset: ONNX opset, 13 to 18.
        output: "logits" or "probabilities" (softmax added when the model ends in logits).
        dynamic_size: leave input height and width open (not for AA / resampled-tap models).
        overwrite: replace an earlier export in `out_dir` (never a folder holding files the zoo did not write).
        verify: compare Keras with the reloaded SavedModel, onnxruntime and LiteRT at `batch_sizes`.
        batch_sizes: the batch sizes of the parity check.
        rtol: relative tolerance of the parity check, per sample, relative to its largest |logit|.
        atol: absolute tolerance of the parity check.
        preprocessing: the input preprocessing to record (default: the run's, beside the checkpoint).
        seed: seed of the parity check's random inputs.
        dataset: the data set to calibrate int8 on and check its accuracy with (default: the run's).
        data_dir: TFDS data folder of `dataset`.
        calibration_images: training images the int8 calibration reads.
        max_accuracy_drop: the largest fall of top-1 accuracy, in percentage points, an int8 artifact may have.
        quantize: None, or "int8": also write `model_int8.onnx` (static QDQ) and/or `model_int8.tflite`
            (full-integer), calibrated on `calibration_images` training images of `dataset` (by default
            the run's own, from run.json) and refused when top-1 on its test split falls more than
            `max_accuracy_drop` points below the Keras model's.
        quantization_data: `(calibration_x, test_x, test_y)` already preprocessed, instead of `dataset`
            (for a model that has no run beside it); `test_x`/`test_y` may be None only with
            `max_accuracy_drop=None` (no accuracy check: the benchmark's random models).

    Returns:
        The manifest, a dict: the model and its source, its input and outputs, the preprocessing and class
        names, the artifacts written (`formats`), the tools' `versions`, and the results of the `parity`
        check and of the int8 `quantization` accuracy check (None when not run).
    """
    import keras

    formats = _check_arguments(format, output, opset, rtol, atol, quantize, calibration_images, max_accuracy_drop)
    out_dir = os.path.abspath(os.fspath(out_dir))
    source_path = None if isinstance(source, keras.Model) else os.fspath(source)
    if source_path is not None and os.path.abspath(source_path).startswith(out_dir + os.sep):
        raise FileExistsError(
            f"The source model {source_path!r} lies inside the destination {out_dir!r}; export to another folder."
        )
    _check_destination(out_dir, overwrite)
    beside = RunFolder.beside(source_path) if source_path is not None else None
    metrics = beside and beside.metrics()
    if preprocessing is None and metrics:
        preprocessing = metrics.get("preprocessing")
    run = beside and beside.raw_config()
    _refuse_data_dir_on_digits(quantize, data_dir, dataset or (run or {}).get("dataset"))
    model, fixed_shape = prepared_model(source if source_path is None else load_trained_model(source_path),
                                         output, dynamic_size)
    quantization = None
    if quantize is not None:
        quantization = _quantization_inputs(quantization_data, dataset, run, data_dir, calibration_images,
                                            preprocessing, fixed_shape, max_accuracy_drop, source_path)

    import tensorflow as tf

    in_shape = (None, None, None, fixed_shape[-1]) if dynamic_size else (None, *fixed_shape)
    spec = tf.TensorSpec(in_shape, tf.float32, name=INPUT_NAME)
    job = dict(model=model, source_path=source_path, out_dir=out_dir, overwrite=overwrite, formats=formats,
               spec=spec, in_shape=in_shape, fixed_shape=fixed_shape, output=output, opset=opset, verify=verify,
               dynamic_size=dynamic_size, batch_sizes=batch_sizes, rtol=rtol, atol=atol,
               preprocessing=preprocessing, run=run, seed=seed, quantize=quantize, quantization=quantization,
               max_accuracy_drop=max_accuracy_drop)
    return _write_locked(job)


def _write_locked(job):
    """The export written under the destination's lock (its parent folder created first)."""
    out_dir = job["out_dir"]
    parent = os.path.dirname(out_dir)
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as e:
        raise PermissionError(f"Export destination {out_dir!r} cannot be created: {unwritable(parent, e)}") from None
    with FolderLock(os.path.join(parent, f".{os.path.basename(out_dir)}.lock"), f"Export destination {out_dir!r}"):
        _recover_interrupted(out_dir)
        _check_destination(out_dir, job["overwrite"])  # again, now that no other export can be writing it
        return _write_export(job)


def _check_arguments(format, output, opset, rtol, atol, quantize, calibration_images, max_accuracy_drop):
    """The formats to write; ValueError naming the first argument that cannot be used."""
    if format not in FORMAT_SETS:
        raise ValueError(f"`format` must be one of {FORMATS}; received format={format!r}.")
    if output not in OUTPUTS:
        raise ValueError(f"`output` must be one of {OUTPUTS}; received output={output!r}.")
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= MAX_OPSET:
        raise ValueError(f"`opset` must be an integer from {MIN_OPSET} to {MAX_OPSET}; received opset={opset!r}.")
    check_bounded("tolerance", rtol, "rtol", "--rtol")  # a tolerance of 1 or more accepts any output
    check_bounded("tolerance", atol, "atol", "--atol")
    formats = FORMAT_SETS[format]
    if quantize is not None:
        if quantize not in QUANTIZATIONS:
            raise ValueError(f"`quantize` must be None or one of {QUANTIZATIONS}; received quantize={quantize!r}.")
        quantized = [fmt.name for fmt in quantizable()]
        if not set(quantized) & set(formats):
            raise ValueError(f"`quantize` applies to the {' and '.join(quantized)} formats; "
                             f"received format={format!r}.")
        check_bounded("examples", calibration_images, "calibration_images", "--calibration-images")
        if max_accuracy_drop is not None:
            check_bounded("accuracy_drop", max_accuracy_drop, "max_accuracy_drop", "--max-accuracy-drop")
    return formats


def _refuse_data_dir_on_digits(quantize, data_dir, dataset):
    """`data_dir` reaches the data set only with --quantize, and never the embedded digits: refused there."""
    if quantize is not None and data_dir is not None and dataset == "digits":
        refuse_on_digits(data_dir=data_dir)


def _quantization_inputs(quantization_data, dataset, run, data_dir, calibration_images, preprocessing,
                         fixed_shape, max_accuracy_drop, source_path):
    """`{"calibration_x", "test_x", "test_y", "description"}` for --quantize: given, or loaded from a data set."""
    if quantization_data is not None:
        calibration_x, test_x, test_y = quantization_data
        calibration_x = np.asarray(calibration_x, "float32")[:calibration_images]
        if (test_x is None or test_y is None) and max_accuracy_drop is not None:
            raise ValueError("`quantization_data` needs test images and labels for the accuracy check "
                             "(or max_accuracy_drop=None to skip it).")
        description = {"dataset": None, "split": "given", "calibration_images": int(len(calibration_x)),
                       "calibration_images_asked": int(calibration_images),
                       "num_examples": None if test_y is None else int(len(test_y))}
    else:
        run = run or {}
        dataset = dataset if dataset is not None else run.get("dataset")
        if not dataset:
            where = f"{source_path!r} has no run.json beside it" if source_path else "the model was given in memory"
            raise ValueError(
                f"{spell('`dataset`', '--dataset')} is needed for "
                f"{spell(repr('int8') + ' quantize', '--quantize int8')}: "
                f"{where}, so the data set to calibrate on "
                "and to check the accuracy with is unknown."
            )
        image_size = run.get("image_size") if run.get("dataset") == dataset else None
        calibration_x, test_x, test_y, description = load_quantization_data(
            dataset, seed=run.get("seed", 0), image_size=image_size, data_dir=data_dir,
            calibration_images=calibration_images, preprocessing=preprocessing, input_shape=fixed_shape)
    return {"calibration_x": calibration_x, "test_x": test_x, "test_y": test_y, "description": description}


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _check_destination(out_dir, overwrite):
    above = os.path.dirname(out_dir)
    while not os.path.lexists(above) and os.path.dirname(above) != above:
        above = os.path.dirname(above)
    if not os.path.isdir(above):
        raise NotADirectoryError(f"The destination {out_dir!r} is under {above!r}, which is a file, not a folder; "
                                 "export to a folder.")
    if os.path.islink(out_dir):
        raise FileExistsError(
            f"The destination {out_dir!r} is a symbolic link; export to the folder it points to "
            f"({os.path.realpath(out_dir)!r}) or to a new folder."
        )
    if not os.path.lexists(out_dir) or (os.path.isdir(out_dir) and not os.listdir(out_dir)):
        return
    flag = spell("overwrite=True", "--overwrite")
    # What is not an export of the zoo's is refused for that reason first: advice to pass --overwrite, which would
    # then be refused, would mislead.
    check_replaceable(out_dir, "export", export_entries().__contains__, "manifest.json", flag=flag)
    if not overwrite:
        raise FileExistsError(f"{out_dir!r} already holds an export; pass {flag} to replace it.")


def _recover_interrupted(out_dir):
    """Undo what a killed export left beside `out_dir` (called under the destination's lock).

    A kill between moving the previous export aside and renaming the new one in
    leaves `.<name>.lacnn-old-*` and no `<name>`: the previous export is put back.
    Half-written `.<name>.lacnn-export-*` folders are removed. Nothing else is touched.
    """
    parent, base = os.path.split(out_dir)
    for entry in sorted(os.listdir(parent)):
        path = os.path.join(parent, entry)
        if entry.startswith(f".{base}.lacnn-old-") and os.path.isdir(path):
            if not os.path.lexists(out_dir):
                os.rename(path, out_dir)
            else:
                shutil.rmtree(path, ignore_errors=True)
        elif entry.startswith(f".{base}.lacnn-export-") and os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)


def _accuracy_gate(job, tmp, artifacts):
    """Top-1 of Keras and of each int8 artifact on the test split; ExportError beyond max_accuracy_drop."""
    q = job["quantization"]
    result = {"calibration": q["description"], "max_accuracy_drop": job["max_accuracy_drop"], "artifacts": {}}
    if q["test_y"] is None:
        for key, name in artifacts.items():
            result["artifacts"][key] = {"path": name, "top1": None, "keras_top1": None, "drop_points": None}
        return result
    model = job["model"]
    keras_top1 = top1(lambda x: np.asarray(model(x, training=False)), q["test_x"], q["test_y"])
    for key, name in artifacts.items():
        accuracy = top1(Runner(os.path.join(tmp, name)), q["test_x"], q["test_y"])
        drop = 100.0 * (keras_top1 - accuracy)
        result["artifacts"][key] = {"path": name, "top1": accuracy, "keras_top1": keras_top1, "drop_points": drop}
        if job["max_accuracy_drop"] is not None and drop > job["max_accuracy_drop"]:
            where = q["description"].get("dataset") or "the given test data"
            raise ExportError(
                f"{name}: top-1 {100 * accuracy:.2f}% against the Keras model's {100 * keras_top1:.2f}% on the "
                f"test split of {where} ({len(q['test_y'])} images): a drop of {drop:.2f} points exceeds "
                f"{spell('max_accuracy_drop', '--max-accuracy-drop')}={job['max_accuracy_drop']}. Nothing was written."
            )
    return result


def _write_export(job):
    out_dir = job["out_dir"]
    parent = os.path.dirname(out_dir)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.lacnn-export-", dir=parent)
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp's 0700 would hide a deployment from a server running as another user
    try:
        manifest = _write_artifacts(job, tmp)
        _check_destination(out_dir, job["overwrite"])
        if os.path.isdir(out_dir) and not os.path.islink(out_dir) and not os.listdir(out_dir):
            _fill_in_place(tmp, out_dir)  # the user's empty folder is kept, with its mode and owner
        else:
            swap_into_place(tmp, out_dir)
        tmp = None
        return manifest
    except Exception as e:
        if tmp is not None and is_disk_full(e, parent):  # the converters and SaveV2 say "disk full" in their words
            kept = "the existing destination is unchanged" if os.path.lexists(out_dir) else "nothing was written"
            raise ExportError(f"No space left on the device while exporting to {out_dir!r}: {kept}. Free some "
                              "space and export again.") from None
        raise
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _fill_in_place(tmp, out_dir):
    """Move the finished export in `tmp` into the empty folder `out_dir`: the zoo's marker first (so a kill in
    between leaves a folder `--overwrite` may replace), the manifest last (so a folder with one is complete)."""
    mark_owned(out_dir, "export")
    for name in sorted(os.listdir(tmp), key=lambda n: n == "manifest.json"):
        os.rename(os.path.join(tmp, name), os.path.join(out_dir, name))
    os.rmdir(tmp)


def _write_artifacts(job, tmp):
    """Every asked artifact written into `tmp`, checked against Keras, and the manifest beside them."""
    model, formats, output, spec = job["model"], job["formats"], job["output"], job["spec"]
    preprocessing = job["preprocessing"]
    metadata = dict(class_names=(preprocessing or {}).get("class_names"), preprocessing=preprocessing)
    runners, entries = {}, {}
    for fmt in EXPORT_FORMATS.values():  # in the table's order
        if fmt.name in formats:
            runners[fmt.name], entries[fmt.name] = fmt.load("writer")(model, tmp, spec, output, opset=job["opset"],
                                                                      metadata=metadata)
    parity = None
    if job["verify"]:
        fixed_shape = job["fixed_shape"]
        shapes = [fixed_shape]
        if job["dynamic_size"]:
            shapes.append((fixed_shape[0] * 2, fixed_shape[1] + 4, fixed_shape[2]))
        parity = {"rtol": job["rtol"], "atol": job["atol"], "rule": PARITY_RULE, "max_abs_diff": _parity(
            model, runners, shapes, job["batch_sizes"], job["rtol"], job["atol"], job["seed"])}
    quantization = None
    if job["quantize"]:
        artifacts = write_int8(model, tmp, spec, formats, job["quantization"]["calibration_x"], metadata)
        methods = {fmt.int8_key: fmt.int8_method for fmt in quantizable()}
        quantization = {"method": methods, **_accuracy_gate(job, tmp, artifacts)}
        for key, name in artifacts.items():
            entries[key] = {"path": name, "checked_by": "top-1 accuracy on the test split, not parity"}
    manifest = _manifest(job, entries, parity, quantization)
    with open(os.path.join(tmp, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2, default=str)
        f.write("\n")
    return manifest


def _manifest(job, entries, parity, quantization):
    model, output, preprocessing = job["model"], job["output"], job["preprocessing"]
    return {
        "model": model.name,
        # Where validate finds the model from any folder: its absolute path, and its path from the manifest
        # (which still holds when the export and its run move together).
        "source": job["source_path"] and os.path.abspath(job["source_path"]),
        "source_relative": job["source_path"] and os.path.relpath(os.path.abspath(job["source_path"]),
                                                                  job["out_dir"]),
        "run": job["run"],
        "keras_config": model.get_config(),
        "input": {"name": INPUT_NAME, "shape": list(job["in_shape"]), "dtype": "float32", "layout": "NHWC"},
        "outputs": [{"name": output, "shape": [None, int(model.outputs[0].shape[-1])]}],
        "num_classes": int(model.outputs[0].shape[-1]),
        "preprocessing": preprocessing,
        "class_names": (preprocessing or {}).get("class_names"),
        "preprocessing_formula": "images = (raw * scale - mean) / std, per channel" if preprocessing else
        "unknown: not trained with `lacnn-zoo train` and no preprocessing given",
        "formats": entries,
        "versions": _versions(job["formats"]),
        "parity": parity,
        "quantization": quantization,
    }
