"""`python -m export MODEL.keras --format onnx|saved_model|both --out DIR` (also `lacnn-zoo-export`)."""

import argparse
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m export", description="Export a trained .keras model.")
    parser.add_argument("model", help="a .keras file, e.g. runs/<run>/best.keras")
    parser.add_argument("--out", required=True, help="destination folder")
    parser.add_argument("--format", default="both", choices=["onnx", "saved_model", "both"])
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (13-18, default 17)")
    parser.add_argument("--output", default="logits", choices=["logits", "probabilities"])
    parser.add_argument("--dynamic-size", action="store_true", help="leave input height and width open")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing destination")
    parser.add_argument("--no-verify", action="store_true", help="skip the parity check (not recommended)")
    parser.add_argument("--rtol", type=float, default=1e-4)
    parser.add_argument("--atol", type=float, default=1e-5)
    parser.add_argument("--debug", action="store_true", help="print the full traceback of an unexpected error")
    args = parser.parse_args(argv)

    from lacnn_zoo.errors import run_command

    return run_command("export", _export, args, code=1)


def _export(args):
    from export.core import export_model

    manifest = export_model(
        args.model, args.out, format=args.format, opset=args.opset, output=args.output,
        dynamic_size=args.dynamic_size, overwrite=args.overwrite, verify=not args.no_verify,
        rtol=args.rtol, atol=args.atol,
    )
    print(f"Exported {manifest['model']} to {args.out}: {', '.join(manifest['formats'])}.")
    if manifest["parity"]:
        for fmt, diffs in manifest["parity"]["max_abs_diff"].items():
            worst = max(diffs.values())
            print(f"  {fmt}: largest |difference| to Keras {worst:.2e} over batches {', '.join(diffs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
