"""`python -m tuning.gpu_check`: one training run and a small mechanism search on the embedded digits, on the
accelerator and then on the CPU of the same machine, with images/s for each.

Meant for a GPU machine that has JAX but no TensorFlow (see docs/search.md, "Search on a GPU"):

    KERAS_BACKEND=jax python -m tuning.gpu_check                # training + 4-trial search, GPU then CPU
    KERAS_BACKEND=jax python -m tuning.gpu_check --skip-cpu --out gpu.json

Everything it trains goes into a temporary folder that is removed at the end; `--out` writes the figures as
JSON. Images/s counts training images per second of training: for the run, over the epochs after the first
(the first includes compilation), for the search, over the whole search.
"""

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time

from lacnn_zoo import training  # `training.train`: looked up at each call, as tests replace it
from lacnn_zoo.data import load_digits
from lacnn_zoo.errors import run_command
from lacnn_zoo.io import check_output_file, write_json
from lacnn_zoo.options import ArgumentParser, bounded
from lacnn_zoo.validation import check_positive_int
from tuning.search import run_search

SEARCH_MECHANISMS = ("plain", "resnet_add", "static_vector", "self_attention")


def accelerators():
    """The backend's accelerator devices (GPU/TPU) as strings; empty on a CPU-only machine."""
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return [str(d) for d in jax.devices() if d.platform != "cpu"]
    if backend == "tensorflow":
        import tensorflow as tf

        return [d.name for d in tf.config.list_logical_devices("GPU")]
    if backend == "torch":
        import torch

        return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return []


@contextlib.contextmanager
def on_cpu():
    """Place arrays and computation on the CPU for the comparison run."""
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        with jax.default_device(jax.devices("cpu")[0]):
            yield
    elif backend == "tensorflow":
        import tensorflow as tf

        with tf.device("/CPU:0"):
            yield
    else:
        with keras.device("cpu:0"):
            yield


def train_run(model, epochs, batch_size, folder, images):
    result = training.train(model, epochs=epochs, batch_size=batch_size, output_dir=folder, verbose=0,
                            tensorboard=False)
    times = training.RunFolder(folder).column("epoch_time_s")[1:] or [result.metrics["train_wall_time_s"]]
    return {
        "images_per_s": images / statistics.median(times),
        "epoch_time_s_median": statistics.median(times),
        "test_accuracy": result.metrics["test_accuracy"],
        "train_wall_time_s": result.metrics["train_wall_time_s"],
    }


def search_run(trials, epochs, batch_size, folder, images):
    start = time.perf_counter()
    # The search visits each mechanism before any twice, so a budget under four searches the first `trials` ones.
    result = run_search(list(SEARCH_MECHANISMS[:trials]), max_trials=trials, epochs=epochs, batch_size=batch_size,
                        directory=folder, project_name="gpu_check", verbose=0)
    wall = time.perf_counter() - start
    return {
        "trials": trials,
        "wall_time_s": wall,
        "images_per_s": trials * epochs * images / wall,
        "best_test_accuracy": result.test_accuracy,
    }


def main(argv=None):
    parser = ArgumentParser(prog="python -m tuning.gpu_check", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="plain_cnn", help="model of the training run (default plain_cnn)")
    parser.add_argument("--epochs", type=bounded("epochs"), default=5, help="epochs of the training run")
    parser.add_argument("--trials", type=bounded("trials"), default=4,
                        help=f"trials of the search (default 4: one per mechanism of {', '.join(SEARCH_MECHANISMS)}; "
                             "fewer search the first ones)")
    parser.add_argument("--search-epochs", type=bounded("epochs"), default=3, help="epochs per trial")
    parser.add_argument("--batch-size", type=bounded("batch_size"), default=128)
    parser.add_argument("--skip-cpu", action="store_true", help="only the accelerator")
    parser.add_argument("--out", help="also write the figures to this JSON file")
    parser.add_argument("--debug", action="store_true", help="print the full traceback of an unexpected error")
    args = parser.parse_args(argv)

    return run_command("tuning.gpu_check", _check, args)


def _check(args):
    import keras

    for name in ("epochs", "trials", "search_epochs", "batch_size"):
        check_positive_int(name, getattr(args, name))
    if args.out:
        check_output_file(args.out, option="--out", flag=None)

    images = len(load_digits(seed=0).train[0])  # training images per epoch
    devices = accelerators()
    report = {"backend": keras.backend.backend(), "keras": keras.__version__, "accelerators": devices,
              "model": args.model, "batch_size": args.batch_size, "runs": {}}
    places = ([("accelerator", contextlib.nullcontext)] if devices else []) + (
        [] if args.skip_cpu and devices else [("cpu", on_cpu)])
    print(f"backend {report['backend']}, accelerators: {', '.join(devices) or 'none (CPU only)'}", flush=True)
    with tempfile.TemporaryDirectory(prefix="lacnn-gpu-check-") as scratch:
        for place, context in places:
            with context():
                train = train_run(args.model, args.epochs, args.batch_size, os.path.join(scratch, place, "train"),
                                  images)
                print(f"{place}: training {args.model}: {train['images_per_s']:.0f} images/s "
                      f"(test accuracy {train['test_accuracy']:.4f})", flush=True)
                search = search_run(args.trials, args.search_epochs, args.batch_size, os.path.join(scratch, place),
                                    images)
                print(f"{place}: {args.trials}-trial search: {search['images_per_s']:.0f} images/s, "
                      f"{search['wall_time_s']:.1f} s", flush=True)
            report["runs"][place] = {"train": train, "search": search}
    runs = report["runs"]
    if "accelerator" in runs and "cpu" in runs:
        report["speedup"] = {kind: runs["accelerator"][kind]["images_per_s"] / runs["cpu"][kind]["images_per_s"]
                             for kind in ("train", "search")}
        print(f"accelerator / CPU: training {report['speedup']['train']:.2f}x, "
              f"search {report['speedup']['search']:.2f}x")
    if args.out:
        write_json(args.out, report)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
