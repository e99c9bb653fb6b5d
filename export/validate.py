"""Top-1 of an exported artifact and of its Keras model on a data set's test split (timm's onnx_validate).

    python -m export.validate exported/digits/model_int8.onnx                 # data set: the run's (manifest)
    python -m export.validate exported/digits/model_int8.tflite --dataset digits --keras runs/digits/best.keras

The artifact (.onnx or .tflite) runs with the deploy snippets' settings (`export.runtimes`); the preprocessing
is the one recorded inside the artifact, the Keras model is the manifest's `source` unless `--keras` names
one. This is how quantised artifacts are judged: by accuracy against the labels, not by parity.
"""

import argparse
import json
import os
import sys


def validate(artifact, *, dataset=None, keras_model=None, data_dir=None, batch_size=128, out=None, overwrite=False):
    """`{"artifact", "top1", "keras_top1", "drop_points", "dataset", "split", "num_examples", ...}`."""
    from export.quantize import load_quantization_data
    from export.runtimes import Runner
    from lacnn_zoo.data import check_preprocessing
    from lacnn_zoo.training.inference import top1
    from lacnn_zoo.validation import check_positive_int

    check_positive_int("batch_size", batch_size)
    if out:
        from lacnn_zoo.errors import spell
        from lacnn_zoo.io import check_output_file

        check_output_file(out, option=spell("`out`", "--out"), overwrite=overwrite,
                          flag=spell("overwrite=True", "--overwrite"))
    artifact = os.fspath(artifact)
    if not artifact.endswith((".onnx", ".tflite")):
        raise ValueError(f"`artifact` must be an .onnx or .tflite file; received {artifact!r}.")
    if not os.path.isfile(artifact):
        raise FileNotFoundError(f"`artifact` {artifact!r} does not exist.")
    manifest_path = os.path.join(os.path.dirname(os.path.abspath(artifact)), "manifest.json")
    manifest = {}
    if os.path.isfile(manifest_path):
        with open(manifest_path) as f:
            manifest = json.load(f)
    run = manifest.get("run") or {}
    dataset = dataset if dataset is not None else run.get("dataset")
    if not dataset:
        from lacnn_zoo.errors import spell

        raise ValueError(f"{spell('`dataset`', '--dataset')} is needed: no manifest.json with a training run beside "
                         f"{artifact!r}.")
    keras_model = keras_model if keras_model is not None else manifest.get("source")
    if keras_model is not None and not os.path.isfile(keras_model):
        raise FileNotFoundError(f"The Keras model {keras_model!r} does not exist; pass --keras MODEL.keras.")

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


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m export.validate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("artifact", help="an exported .onnx or .tflite file")
    parser.add_argument("--dataset", default=None, help="'digits', an image folder or a TFDS name (default: the run's)")
    parser.add_argument("--keras", default=None, help="the Keras model to compare with (default: the manifest's source)")
    parser.add_argument("--data-dir", default=None, help="TFDS data folder")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--out", default=None, help="also write the result to this JSON file")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    parser.add_argument("--debug", action="store_true", help="print the full traceback of an unexpected error")
    args = parser.parse_args(argv)

    from lacnn_zoo.errors import run_command

    return run_command("export.validate", _main, args, code=1)


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
