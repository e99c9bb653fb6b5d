"""Inference latency: onnxruntime against Keras `predict_on_batch` and the reloaded SavedModel.

    python -m export.bench                       # one model per family, batch 1 and 32
    python -m export.bench 'resnet20' 'lacnn_*_tiny' --batch-sizes 1 32

Each model is built at its registered default input size, exported to a
temporary folder (parity-checked), then the three runtimes are timed in
interleaved rounds in one process after warm-up; medians are reported.
"""

import argparse
import functools
import statistics
import sys
import tempfile
import time

import numpy as np

DEFAULT_MODELS = [
    "plain_cnn", "resnet20", "resnet8_beta", "resnet8_projection", "wrn10_2", "aa_resnet8",
    "lacnn_innate_static", "lacnn_static_vector", "lacnn_self_attention", "lacnn_dynamic_recurrent",
]


def _median_time(fn, repeats):
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def latency_rows(names, batch_sizes=(1, 32), rounds=5, repeats=10, seed=0):
    import keras
    import onnxruntime as ort
    import tensorflow as tf

    from export.core import export_model
    from lacnn_zoo import build_model, model_info
    from lacnn_zoo.batchnorm import calibrate_batchnorm

    rows = []
    rng = np.random.default_rng(seed)
    for name in names:
        keras.backend.clear_session()
        shape = model_info(name).default_input_shape
        model = build_model(name, input_shape=shape)
        calibrate_batchnorm(model, rng.normal(size=(32, *shape)).astype("float32"))
        with tempfile.TemporaryDirectory() as tmp:
            export_model(model, f"{tmp}/out", format="both")
            session = ort.InferenceSession(f"{tmp}/out/model.onnx", providers=["CPUExecutionProvider"])
            loaded = tf.saved_model.load(f"{tmp}/out/saved_model")
            for batch in batch_sizes:
                x = rng.normal(size=(batch, *shape)).astype("float32")
                tx = tf.constant(x)
                runners = {
                    "onnxruntime": functools.partial(session.run, None, {"images": x}),
                    "keras": functools.partial(model.predict_on_batch, x),
                    "saved_model": functools.partial(loaded.serve, tx),
                }
                for run in runners.values():  # warm-up: tracing, graph optimisation
                    for _ in range(3):
                        run()
                samples = {k: [] for k in runners}
                for _ in range(rounds):
                    for key, run in runners.items():
                        samples[key].append(_median_time(run, repeats))
                ms = {k: 1e3 * statistics.median(v) for k, v in samples.items()}
                rows.append({
                    "model": name, "family": model_info(name).family, "batch": batch,
                    "onnxruntime_ms": ms["onnxruntime"], "keras_ms": ms["keras"], "saved_model_ms": ms["saved_model"],
                    "speedup_vs_keras": ms["keras"] / ms["onnxruntime"],
                    "speedup_vs_saved_model": ms["saved_model"] / ms["onnxruntime"],
                })
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("patterns", nargs="*", help="model names or wildcards (default: one per family)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args(argv)

    from lacnn_zoo.registry import resolve_models

    names = resolve_models(args.patterns) if args.patterns else DEFAULT_MODELS
    if not names:
        print(f"No registered model matches {args.patterns}.", file=sys.stderr)
        return 1
    rows = latency_rows(names, batch_sizes=args.batch_sizes, rounds=args.rounds, repeats=args.repeats)
    print(f"{'model':<28} {'batch':>5} {'onnxrt ms':>10} {'keras ms':>9} {'savedmodel ms':>14} "
          f"{'x keras':>8} {'x savedmodel':>13}")
    for r in rows:
        print(f"{r['model']:<28} {r['batch']:>5} {r['onnxruntime_ms']:>10.2f} {r['keras_ms']:>9.2f} "
              f"{r['saved_model_ms']:>14.2f} {r['speedup_vs_keras']:>8.1f} {r['speedup_vs_saved_model']:>13.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
