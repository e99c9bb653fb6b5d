"""Side-by-side training-step timing of models against the backbone they build on.

    lacnn-zoo bench 'lacnn_*' --input-shape 32 32 3 --batch-size 128

For every model it builds "the plain backbone it taps" (same convolutional
stack, global-average-pooling head), warms both up, then times them in
interleaved rounds in one process and reports median step times and the ratio.
Interleaving means a noisy machine slows both sides of a ratio alike.
"""

import csv
import statistics
import sys
import time

import keras
import numpy as np

from lacnn_zoo.registry import build_model, list_models, model_info


def baseline_of(name, overrides=None):
    """(label, build kwargs) of the model a variant builds on, or None if it is a baseline itself."""
    info = model_info(name)
    knobs = {**info.knobs, **(overrides or {})}
    if info.family == "layer_attended":
        if knobs["backbone"] == "plain":
            return "plain backbone", ("plain_cnn", dict(widths=knobs["widths"], depth=knobs["depth"],
                                                        downsample=knobs["downsample"]))
        blocks = knobs["depth"]
        return "residual backbone", ("resnet20", dict(depth=6 * blocks + 2, widths=knobs["widths"],
                                                      mixing=knobs["mixing"], beta_init=knobs["beta_init"]))
    return None


def _step_fn(model, x, y):
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))

    def step():
        return model.train_on_batch(x, y)

    return step


def time_steps(steps, *, rounds=5, steps_per_round=3, warmup=3):
    """Median seconds per call of each function, measured in interleaved rounds."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    samples = {k: [] for k in steps}
    for _ in range(rounds):
        for key, step in steps.items():
            start = time.perf_counter()
            for _ in range(steps_per_round):
                step()
            samples[key].append((time.perf_counter() - start) / steps_per_round)
    return {k: statistics.median(v) for k, v in samples.items()}


def overhead_table(names, *, input_shape=(32, 32, 3), batch_size=128, num_classes=10, rounds=5,
                   steps_per_round=3, warmup=3, seed=0):
    """Rows of (model, baseline, params, step ms, baseline step ms, ratio, images/s)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch_size, *input_shape)).astype("float32")
    y = rng.integers(0, num_classes, size=batch_size).astype("int32")
    rows = []
    for name in names:
        keras.backend.clear_session()
        keras.utils.set_random_seed(seed)
        model = build_model(name, input_shape=input_shape, num_classes=num_classes)
        steps = {name: _step_fn(model, x, y)}
        base = baseline_of(name)
        if base is not None:
            label, (base_name, base_knobs) = base
            baseline = build_model(base_name, input_shape=input_shape, num_classes=num_classes, **base_knobs)
            steps["baseline"] = _step_fn(baseline, x, y)
        times = time_steps(steps, rounds=rounds, steps_per_round=steps_per_round, warmup=warmup)
        rows.append({
            "model": name,
            "baseline": label if base is not None else "",
            "params": int(model.count_params()),
            "step_ms": 1e3 * times[name],
            "baseline_step_ms": 1e3 * times["baseline"] if base is not None else float("nan"),
            "ratio": times[name] / times["baseline"] if base is not None else float("nan"),
            "images_per_s": batch_size / times[name],
        })
    return rows


def print_table(rows, file=None):
    file = file or sys.stdout
    print(f"{'model':<32} {'params':>10} {'step ms':>9} {'backbone ms':>12} {'ratio':>7} {'img/s':>8}", file=file)
    for r in rows:
        print(f"{r['model']:<32} {r['params']:>10,} {r['step_ms']:>9.1f} {r['baseline_step_ms']:>12.1f} "
              f"{r['ratio']:>7.3f} {r['images_per_s']:>8.0f}", file=file)


def write_csv(rows, path):
    from lacnn_zoo.io import atomic_path

    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)


def main_bench(args):
    names = list_models(args.patterns)
    if not names:
        raise ValueError(f"No registered model matches {args.patterns!r}.")
    rows = overhead_table(names, input_shape=tuple(args.input_shape), batch_size=args.batch_size,
                          rounds=args.rounds, steps_per_round=args.steps)
    print(f"backend {keras.backend.backend()}, input {tuple(args.input_shape)}, batch {args.batch_size}, "
          f"median of {args.rounds} interleaved rounds x {args.steps} steps")
    print_table(rows)
    if args.csv:
        write_csv(rows, args.csv)
    return 0
