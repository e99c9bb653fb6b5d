"""Is `--ema` ever worse than training without it? Each seed trained both ways, test accuracies compared.

    python -m lacnn_zoo.experiments.ema_check                  # the main job: digits, its default model, 30 epochs
    python -m lacnn_zoo.experiments.ema_check --dataset ./photos --model plain_cnn_tiny --epochs 30 --seeds 0 1 2

For every seed, `lacnn_zoo.training.train` runs once as asked and once with `--ema` (`--ema-decay`, when given),
into `--out/raw/seed<k>` and `--out/ema/seed<k>`; a finished run there is reused and an unfinished one resumed
(as `lacnn-zoo compare` does), so an interrupted check continues where it stopped. Printed: each seed's two
test accuracies and which model the EMA run's best.keras holds, the mean and standard deviation of each side,
the paired difference (EMA - raw) with its 95% confidence interval (Student's t over the seeds' differences),
and a verdict: "not below" when the interval reaches 0 or above (any shortfall is within the seeds' noise),
"below" when the whole interval is under 0. The figures also go to `--out/ema_check.json`.
"""

import argparse
import math
import os
import sys
import time

import numpy as np

from lacnn_zoo.data import is_folder_name
from lacnn_zoo.errors import run_command
from lacnn_zoo.experiments.compare import check_seeds
from lacnn_zoo.experiments.statistics import CONFIDENCE, mean_std
from lacnn_zoo.io import write_json
from lacnn_zoo.options import ArgumentParser, bounded
from lacnn_zoo.training import train
from lacnn_zoo.training.loop import DEFAULT_MODEL
from lacnn_zoo.training.run_folder import RunFolder, plain


def paired(differences, confidence=CONFIDENCE):
    """(mean, low, high) of the paired differences: the mean with Student's t interval at `confidence`; the
    interval is None for a single value, and the mean itself when every difference is the same."""
    from scipy import stats

    d = np.asarray(differences, dtype=float)
    mean = float(d.mean())
    if len(d) < 2:
        return mean, None, None
    half = float(stats.t.ppf(0.5 + confidence / 2, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d)))
    return mean, mean - half, mean + half


def verdict(mean, low, high):
    if low is None:
        return "not shown: one seed gives no interval (use --seeds with 2 or more seeds)"
    if high < 0:
        return "--ema is BELOW the raw run beyond noise (the whole 95% interval of EMA - raw is under 0)"
    if low > 0:
        return "--ema is not below the raw run: it is above it beyond noise (the whole 95% interval is over 0)"
    return "--ema is not below the raw run beyond noise (the 95% interval of EMA - raw reaches 0)"


def run_one(out, kind, seed, args):
    """The metrics of one run (trained, resumed or reused); a reused folder must hold the run asked for."""
    folder = RunFolder(os.path.join(out, kind, f"seed{seed}"))
    options = dict(dataset=args.dataset, epochs=args.epochs, seed=seed, ema=kind == "ema",
                   image_size=tuple(args.image_size) if args.image_size else None)
    if kind == "ema" and args.ema_decay is not None:
        options["ema_decay"] = args.ema_decay
    if folder.is_finished():
        dataset = args.dataset
        if is_folder_name(dataset):  # run.json records a folder by its absolute path
            dataset = os.path.abspath(os.path.expanduser(dataset))
        asked = {**options, "model": args.model, "dataset": dataset}
        stored = folder.config()
        differ = [k for k in asked if stored.get(k) != plain(asked[k])]
        if differ:
            raise ValueError(f"{folder.path!r} holds a finished run of another configuration ({', '.join(differ)} "
                             "differ); choose another --out.")
        return folder.metrics()
    return train(args.model, output_dir=folder.path, resume=folder.is_run(), verbose=0, tensorboard=False,
                 **options).metrics


def check(args, log=print):
    """Train (or reuse) both runs of every seed, print the comparison and return its figures."""
    rows = []
    for seed in args.seeds:
        start = time.perf_counter()
        raw, ema = (run_one(args.out, kind, seed, args) for kind in ("raw", "ema"))
        rows.append({"seed": seed, "raw": raw["test_accuracy"], "ema": ema["test_accuracy"],
                     "best_weights": ema.get("best_weights", "raw"), "ema_decay": ema["config"].get("ema_decay")})
        log(f"seed {seed}: test accuracy raw {raw['test_accuracy']:.4f}, --ema {ema['test_accuracy']:.4f} "
            f"(difference {ema['test_accuracy'] - raw['test_accuracy']:+.4f}; best.keras of the --ema run: "
            f"{'averaged' if rows[-1]['best_weights'] == 'ema' else 'raw'} weights) "
            f"[{time.perf_counter() - start:.0f} s]")
    summary = {side: mean_std([r[side] for r in rows]) for side in ("raw", "ema")}
    mean, low, high = paired([r["ema"] - r["raw"] for r in rows])
    spread = lambda s: "n/a" if len(rows) < 2 else f"{s:.4f}"  # noqa: E731  (no spread from one seed)
    for side, label in (("raw", "raw  "), ("ema", "--ema")):
        m, s = summary[side]
        log(f"{label}: mean test accuracy {m:.4f} ± {spread(s)} (std over {len(rows)} seeds)")
    interval = "n/a" if low is None else f"[{low:+.4f}, {high:+.4f}]"
    log(f"paired difference (--ema - raw): {mean:+.4f}, 95% confidence interval {interval}")
    kept = sum(r["best_weights"] == "ema" for r in rows)
    log(f"best.keras held the averaged weights in {kept} of {len(rows)} --ema runs")
    line = verdict(mean, low, high)
    log(f"verdict: {line}")
    result = {"model": args.model, "dataset": args.dataset, "epochs": args.epochs, "seeds": rows,
              "raw_mean": summary["raw"][0], "raw_std": summary["raw"][1], "ema_mean": summary["ema"][0],
              "ema_std": summary["ema"][1], "difference": mean, "ci_low": low, "ci_high": high,
              "confidence": CONFIDENCE, "verdict": line}

    write_json(os.path.join(args.out, "ema_check.json"), result)
    return result


def main(argv=None):
    parser = ArgumentParser(prog="python -m lacnn_zoo.experiments.ema_check", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="digits", help="'digits' (the main job's), an image folder or a TFDS "
                                                            "name")
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"a registered model (default {DEFAULT_MODEL}, the "
                                                                "main job's)")
    parser.add_argument("--epochs", type=bounded("epochs"), default=30, help="epochs of every run (30, the main "
                                                                             "job's)")
    parser.add_argument("--seeds", type=bounded("seed"), nargs="+", default=[0, 1, 2])
    parser.add_argument("--ema-decay", type=bounded("ema_decay"), help="the --ema runs' decay (default: train's)")
    parser.add_argument("--image-size", type=bounded("image_side"), nargs=2, metavar=("H", "W"),
                        help="resize the images of a folder or TFDS set")
    parser.add_argument("--out", default="runs/ema-check", help="the runs' folder (finished runs are reused)")
    parser.add_argument("--debug", action="store_true", help="print the full traceback of an unexpected error")
    args = parser.parse_args(argv)
    try:
        args.seeds = check_seeds(args.seeds)
    except ValueError as e:
        parser.error(str(e))
    return run_command("python -m lacnn_zoo.experiments.ema_check", _run, args)


def _run(args):
    check(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
