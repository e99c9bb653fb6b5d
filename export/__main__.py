"""`python -m export MODEL.keras --out DIR [--format onnx|saved_model|litert|both|all] [--quantize int8]`
(also `lacnn-zoo-export`, `lacnn-zoo export`)."""

import sys

import lacnn_zoo.errors as errors  # not `from lacnn_zoo import errors`: the package's __getattr__ loads Keras
from export.options import (
    DEFAULT_CALIBRATION_IMAGES,
    DEFAULT_MAX_ACCURACY_DROP,
    FORMAT_SETS,
    FORMATS,
    OUTPUTS,
    QUANTIZATIONS,
)
from export.table import EXPORT_FORMATS
from lacnn_zoo import __version__, launch
from lacnn_zoo.options import ArgumentParser, bounded

DESCRIPTION = "Export a trained .keras model."


def add_arguments(parser):
    """The export's options on `parser` (shared by `python -m export` and `lacnn-zoo export`)."""
    parser.add_argument("model", help="a .keras file, e.g. runs/<run>/best.keras")
    parser.add_argument("--out", required=True, help="destination folder")
    parser.add_argument("--format", default="both", choices=FORMATS,
                        help=f"both = {' + '.join(FORMAT_SETS['both'])} (default); "
                             f"all = {' + '.join(FORMAT_SETS['all'])}")
    parser.add_argument("--opset", type=bounded("opset"), default=None, help="ONNX opset (13-18, default 17)")
    parser.add_argument("--output", default="logits", choices=OUTPUTS)
    parser.add_argument("--dynamic-size", action="store_true", help="leave input height and width open")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing destination")
    parser.add_argument("--no-verify", action="store_true", help="skip the parity check (not recommended)")
    parser.add_argument("--rtol", type=bounded("tolerance"), default=None,
                        help="parity tolerance, relative (default 1e-4)")
    parser.add_argument("--atol", type=bounded("tolerance"), default=None,
                        help="parity tolerance, absolute (default 1e-5)")
    parser.add_argument("--quantize", choices=QUANTIZATIONS, default=None,
                        help="also write int8 artifacts (static QDQ onnx, full-integer LiteRT), checked by accuracy")
    parser.add_argument("--dataset", default=None,
                        help="data set to calibrate on and check accuracy with (default: the run's, from run.json)")
    parser.add_argument("--data-dir", default=None, help="TFDS data folder, as for training")
    parser.add_argument("--calibration-images", type=bounded("examples"), default=None,
                        help=f"training images to calibrate int8 ranges on (default {DEFAULT_CALIBRATION_IMAGES})")
    parser.add_argument("--max-accuracy-drop", type=bounded("accuracy_drop"), default=None,
                        help="refuse int8 artifacts whose test top-1 falls more than this many points below "
                             f"Keras' (default {DEFAULT_MAX_ACCURACY_DROP})")
    parser.add_argument("--debug", action="store_true", help="print the full traceback of an unexpected error")
    return parser


def main(argv=None):
    parser = add_arguments(ArgumentParser(prog="python -m export", description=DESCRIPTION).add_version(__version__))
    return run(parser.parse_args(argv))


def run(args, prog="export"):
    """Run the parsed command: TensorFlow started quietly, expected failures in one line with exit status 2 (as
    every command of the zoo, and argparse's usage errors)."""
    launch.start_quietly()
    # The converters print their own start-up lines mid-command (LiteRT's): filtered as TensorFlow's, on the
    # command line only (an in-process caller keeps its stderr), TF_CPP_MIN_LOG_LEVEL=0 showing them.
    with launch.filtered_stderr(launch.launched_as() is not None and launch.quiet_requested()):
        return errors.run_command(prog, export, args)


def _inapplicable(args):
    """The options given that cannot take effect with the others (each is refused, never ignored)."""
    rules = [
        (args.quantize is None, "--quantize int8",
         {"--calibration-images": args.calibration_images, "--max-accuracy-drop": args.max_accuracy_drop,
          "--dataset": args.dataset, "--data-dir": args.data_dir}),
        (args.no_verify, "the parity check (drop --no-verify)", {"--rtol": args.rtol, "--atol": args.atol}),
    ]
    for fmt in EXPORT_FORMATS.values():  # a format's own options (--opset: ONNX's) need a --format that writes it
        if fmt.options:
            sets = [name for name, formats in FORMAT_SETS.items() if fmt.name in formats]
            rules.append((fmt.name not in FORMAT_SETS[args.format],
                          f"an {fmt.title} format (--format {', '.join(sets[:-1])} or {sets[-1]})",
                          {flag: getattr(args, flag[2:].replace("-", "_")) for flag in fmt.options}))
    for applies_not, needs, options in rules:
        given = [flag for flag, value in options.items() if value is not None]
        if applies_not and given:
            raise ValueError(f"{', '.join(given)} only take{'s' if len(given) == 1 else ''} effect with {needs}; "
                             "remove it or add what it needs.")


def export(args):
    from export.core import export_model  # lazy: --help and argument errors answer without TensorFlow

    _inapplicable(args)
    given = {k: v for k, v in dict(opset=args.opset, rtol=args.rtol, atol=args.atol,
                                  calibration_images=args.calibration_images,
                                  max_accuracy_drop=args.max_accuracy_drop).items() if v is not None}
    manifest = export_model(
        args.model, args.out, format=args.format, output=args.output, dynamic_size=args.dynamic_size,
        overwrite=args.overwrite, verify=not args.no_verify, quantize=args.quantize, dataset=args.dataset,
        data_dir=args.data_dir, **given,
    )
    print(f"Exported {manifest['model']} to {args.out}: {', '.join(manifest['formats'])}.")
    if manifest["parity"]:
        for fmt, diffs in manifest["parity"]["max_abs_diff"].items():
            worst = max(diffs.values())
            print(f"  {fmt}: largest |difference| to Keras {worst:.2e} over batches {', '.join(diffs)}")
    if manifest["quantization"]:
        calibration = manifest["quantization"]["calibration"]
        for key, figures in manifest["quantization"]["artifacts"].items():
            print(f"  {key}: top-1 {100 * figures['top1']:.2f}% (Keras {100 * figures['keras_top1']:.2f}%, drop "
                  f"{figures['drop_points']:.2f} points) on the test split of {calibration['dataset']} "
                  f"({calibration['num_examples']} images); calibrated on {calibration['calibration_images']} "
                  f"training images{_fewer(calibration)}")
    return 0


def _fewer(calibration):
    """What a `--calibration-images` above the training split's size became, said where the count is printed."""
    asked, used = calibration.get("calibration_images_asked"), calibration["calibration_images"]
    return f" (all the split has; {asked} were asked)" if asked is not None and asked > used else ""


if __name__ == "__main__":
    sys.exit(main())
