"""Top-1 of an exported artifact and of its Keras model on a data set's test split (timm's onnx_validate).

    python -m export.validate exported/digits/model_int8.onnx                 # data set: the run's (manifest)
    python -m export.validate exported/digits/model_int8.tflite --dataset digits --keras runs/digits/best.keras

The artifact (.onnx or .tflite) runs with the settings of docs/deployment.md's snippets; the preprocessing
is the one recorded inside the artifact, the Keras model is the manifest's `source` unless `--keras` names
one. This is how quantised artifacts are judged: by accuracy against the labels, not by parity.
"""

import argparse
import os
import sys

from export.bench import import_zoo_options
from export.runtimes import Runner
from export.table import artifact_format, artifact_kinds

# Lazy imports: any import of lacnn_zoo (its eager registration), export.core or export.quantize starts
# TensorFlow; `main` starts it through `export.bench.import_zoo_options`, which keeps TensorFlow's start-up lines
# off stderr (a usage error stays one line), and the module imports without TensorFlow.


def validate(artifact, *, dataset=None, keras_model=None, data_dir=None, batch_size=128, out=None, overwrite=False):
    """`{"artifact", "top1", "keras_top1", "drop_points", "dataset", "split", "num_examples", ...}`."""
    from export.quantize import load_quantization_data
    from lacnn_zoo.data import check_preprocessing
    from lacnn_zoo.io import check_readable_file
    from lacnn_zoo.options import check_bounded
    from lacnn_zoo.training import top1

    check_bounded("batch_size", batch_size, flag="--batch-size")
    from lacnn_zoo.training import check_output_option

    check_output_option(out, overwrite, "out")
    artifact = os.fspath(artifact)
    artifact_format(artifact)  # ValueError for a file of no format's
    check_readable_file(artifact, "`artifact`", f"an exported {artifact_kinds()} file")  # runtimes blame the file
    manifest_path = os.path.join(os.path.dirname(os.path.abspath(artifact)), "manifest.json")
    manifest = {}
    if os.path.isfile(manifest_path):
        from lacnn_zoo.io import read_json_checked

        manifest = read_json_checked(manifest_path)
    run = manifest.get("run") or {}
    dataset = dataset if dataset is not None else run.get("dataset")
    from lacnn_zoo.errors import spell

    if not dataset:
        raise ValueError(f"{spell('`dataset`', '--dataset')} is needed: no manifest.json with a training run beside "
                         f"{artifact!r}.")
    if dataset == "digits" and data_dir is not None:
        from lacnn_zoo.data import refuse_on_digits

        refuse_on_digits(data_dir=data_dir)
    keras_model = _keras_model(keras_model, manifest, manifest_path)

    runner = Runner(artifact)
    image_size = run.get("image_size") if run.get("dataset") == dataset else None
    input_shape = manifest.get("input", {}).get("shape", [None])[1:] or None
    # What a deployment reads is what the artifact carries, not the manifest: it must be whole.
    check_preprocessing(runner.metadata.get("preprocessing"), input_shape,
                        what=f"The preprocessing recorded inside {artifact!r}")
    _, test_x, test_y, description = load_quantization_data(
        dataset, seed=run.get("seed", 0), image_size=image_size, data_dir=data_dir, calibration_images=1,
        preprocessing=runner.metadata.get("preprocessing"), input_shape=input_shape)
    result = {"artifact": artifact, "runtime": runner.kind, "top1": top1(runner, test_x, test_y, batch_size),
              "keras_model": keras_model, "keras_top1": None, "drop_points": None,
              **{k: description[k] for k in ("dataset", "seed", "split", "num_examples")}}
    if keras_model is not None:
        import numpy as np

        from export.core import load_trained_model

        model = load_trained_model(keras_model)
        result["keras_top1"] = top1(lambda x: np.asarray(model(x, training=False)), test_x, test_y, batch_size)
        result["drop_points"] = 100.0 * (result["keras_top1"] - result["top1"])
    if out:
        from lacnn_zoo.io import write_json

        write_json(out, result)
    return result


def _keras_model(given, manifest, manifest_path):
    """The Keras model to compare with: `given`, else the manifest's source, found from any folder (its absolute
    path, then its path relative to the manifest, for an export moved together with its run), or None."""
    from lacnn_zoo.errors import spell

    if given is not None:
        given = os.fspath(given)
        if os.path.isdir(given):
            raise IsADirectoryError(f"{spell('`keras_model`', '--keras')} {given!r} is a folder; pass a .keras file.")
        if not os.path.exists(given):
            raise FileNotFoundError(f"{spell('`keras_model`', '--keras')} {given!r} does not exist.")
        return given
    recorded = [manifest.get("source")]
    if manifest.get("source_relative"):
        recorded.append(os.path.join(os.path.dirname(manifest_path), manifest["source_relative"]))
    recorded = [path for path in recorded if isinstance(path, str) and path]
    for path in recorded:
        if os.path.isfile(path):
            return os.path.normpath(path)
    if recorded:
        raise FileNotFoundError(f"The Keras model the manifest names is not at {' nor '.join(map(repr, recorded))}; "
                                f"pass {spell('keras_model=', '--keras ')}MODEL.keras.")
    return None


def main(argv=None):
    options = import_zoo_options()
    parser = options.ArgumentParser(prog="python -m export.validate", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("artifact", help=f"an exported {artifact_kinds()} file")
    parser.add_argument("--dataset", default=None, help="'digits', an image folder or a TFDS name (default: the run's)")
    parser.add_argument("--keras", default=None,
                        help="the Keras model to compare with (default: the manifest's source)")
    parser.add_argument("--data-dir", default=None, help="TFDS data folder")
    parser.add_argument("--batch-size", type=options.bounded("batch_size"), default=128)
    parser.add_argument("--out", default=None, help="also write the result to this JSON file")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    parser.add_argument("--debug", action="store_true", help="print the full traceback of an unexpected error")
    args = parser.parse_args(argv)

    from lacnn_zoo import launch
    from lacnn_zoo.errors import run_command

    # The LiteRT interpreter prints its own line ("Created TensorFlow Lite XNNPACK delegate"): filtered as
    # TensorFlow's on the command line only (an in-process caller keeps its stderr), TF_CPP_MIN_LOG_LEVEL=0
    # showing it.
    with launch.filtered_stderr(__name__ == "__main__" and launch.quiet_requested()):
        return run_command("export.validate", _main, args)


def _main(args):
    r = validate(args.artifact, dataset=args.dataset, keras_model=args.keras, data_dir=args.data_dir,
                 batch_size=args.batch_size, out=args.out, overwrite=args.overwrite)
    where = f"the {r['split']} split of {r['dataset']} ({r['num_examples']} images, seed {r['seed']})"
    print(f"{os.path.basename(r['artifact'])} ({r['runtime']}): top-1 {100 * r['top1']:.2f}% on {where}")
    if r["keras_top1"] is not None:
        print(f"Keras model {r['keras_model']}: top-1 {100 * r['keras_top1']:.2f}%; drop {r['drop_points']:.2f} points")
    else:
        print("No Keras model to compare with (no manifest source; pass --keras MODEL.keras).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
