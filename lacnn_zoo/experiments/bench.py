"""Benchmark models: parameters, FLOPs, training / inference throughput, peak memory, overhead ratio.

    lacnn-zoo bench 'lacnn_*' --input-shape 32 32 3 --batch-size 128 [--memory] [--csv out.csv]

For every model it builds "the plain backbone it taps" (same convolutional
stack, global-average-pooling head), warms both up, then times their training
steps in interleaved rounds in one process and reports median step times and
the ratio.  Interleaving means a noisy machine slows both sides of a ratio
alike.  FLOPs per image come from the backend's own cost analysis (TensorFlow's
profiler on the frozen inference graph, XLA's cost analysis on JAX; one
multiply-add counts as two FLOPs).  `--memory` measures the peak resident-set
growth of one training step, each model in a fresh child process.
"""

import contextlib
import functools
import json
import os
import statistics
import subprocess
import sys
import time

import keras
import numpy as np

from lacnn_zoo.compat import tf_forward_flops
from lacnn_zoo.errors import spell
from lacnn_zoo.io import check_output_file, write_csv
from lacnn_zoo.layers.layer_attention import MECHANISMS
from lacnn_zoo.models.backbones import resolve_backbone
from lacnn_zoo.models.layer_attended import layer_attended
from lacnn_zoo.models.registry import build_model, model_info, resolve_models
from lacnn_zoo.options import check_bounded, check_input_batch


def baseline_of(name, overrides=None):
    """(label, build kwargs) of the model a variant builds on, or None if it is a baseline itself."""
    info = model_info(name)
    knobs = {**info.knobs, **(overrides or {})}
    if info.family == "layer_attended":
        if knobs["backbone"] == "plain":
            return "plain backbone", ("plain_cnn", dict(widths=knobs["widths"], depth=knobs["depth"],
                                                        downsample=knobs["downsample"]))
        blocks = knobs["depth"]
        return "residual backbone", ("resnet20", model_info("resnet20").applicable(dict(  # beta_init with beta only
            depth=6 * blocks + 2, widths=knobs["widths"], mixing=knobs["mixing"], beta_init=knobs["beta_init"])))
    return None


def _step_fn(model, x, y):
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))

    def step():
        return model.train_on_batch(x, y)

    return step


def time_step_samples(steps, *, rounds=5, steps_per_round=5, warmup=3, progress=None):
    """Seconds per call of each function in every round (a list per key), measured in interleaved rounds
    whose order rotates from round to round; `progress(text)`, when given, is told as each round ends."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    samples = {k: [] for k in steps}
    keys = list(steps)
    for r in range(rounds):
        # Each round starts with the next function, so no function always runs first (or right after another).
        for key in keys[r % len(keys):] + keys[:r % len(keys)]:
            step = steps[key]
            start = time.perf_counter()
            for _ in range(steps_per_round):
                step()
            samples[key].append((time.perf_counter() - start) / steps_per_round)
        if progress is not None:
            progress(f"round {r + 1}/{rounds} timed")
    return samples


def time_steps(steps, *, rounds=5, steps_per_round=5, warmup=3):
    """Median seconds per call of each function, measured in interleaved rounds."""
    samples = time_step_samples(steps, rounds=rounds, steps_per_round=steps_per_round, warmup=warmup)
    return {k: statistics.median(v) for k, v in samples.items()}


def ratio_spread(samples, key, base):
    """Median and (min, max) over rounds of the per-round ratio `key / base`: a round slows both alike."""
    ratios = [a / b for a, b in zip(samples[key], samples[base])]
    return statistics.median(ratios), min(ratios), max(ratios)


def flops_per_image(model, input_shape):
    """Inference FLOPs for one image from the backend's cost analysis; None where unsupported.

    Args:
        model: a built `keras.Model`.
        input_shape: one image's shape, `(height, width, channels)`.

    Returns:
        The float operations (int) of one inference-mode forward pass on a batch of one image: TensorFlow's
        profiler on TensorFlow, XLA's cost analysis on JAX (None when it reports none); None on other backends.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        def forward(x):
            return model(x, training=False)

        return tf_forward_flops(tf.function(forward).get_concrete_function(tf.TensorSpec([1, *input_shape],
                                                                                         tf.float32)))
    if backend == "jax":
        import jax

        trainable = [v.value for v in model.trainable_variables]
        fixed = [v.value for v in model.non_trainable_variables]

        def forward(x):
            return model.stateless_call(trainable, fixed, x, training=False)[0]

        analysis = jax.jit(forward).lower(np.zeros((1, *input_shape), "float32")).compile().cost_analysis()
        analysis = analysis[0] if isinstance(analysis, (list, tuple)) else analysis
        return int(analysis.get("flops", 0)) or None
    return None


def _status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"/proc/self/status has no {field}")


def peak_step_memory_mib(step, warmup_step):
    """Peak resident-set growth (MiB) of `step()` after `warmup_step()` (Linux VmHWM, reset via clear_refs).

    Warm up on a small batch so tracing and compilation happen first without
    allocating the full batch's working set.
    """
    warmup_step()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current resident set
    before = _status_kib("VmRSS")
    step()
    return max(0, _status_kib("VmHWM") - before) / 1024


def model_memory_child(name, input_shape, batch_size, num_classes=10):
    """Run in a fresh process: peak MiB of one training step of a registered model."""
    model = build_model(name, input_shape=tuple(input_shape), num_classes=num_classes)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch_size, *input_shape)).astype("float32")
    y = rng.integers(0, num_classes, size=batch_size).astype("int32")
    step = _step_fn(model, x, y)
    return peak_step_memory_mib(step, lambda: model.train_on_batch(x[:1], y[:1]))


def measure_memory(name, input_shape, batch_size):
    code = (
        "import json; from lacnn_zoo.experiments.bench import model_memory_child; "
        f"print(json.dumps(model_memory_child({name!r}, {list(input_shape)!r}, {batch_size})))"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def check_timing(input_shape, batch_size, rounds, steps_per_round, warmup):
    """The checked `(input_shape, batch_size)`; a count out of its range, or an input batch larger than this
    machine's memory, is refused before any model is built."""
    if isinstance(input_shape, (str, bytes)) or not hasattr(input_shape, "__len__") or len(input_shape) != 3:
        raise ValueError(f"{spell('`input_shape`', '--input-shape')} must be (height, width, channels); received "
                         f"{input_shape!r}.")
    shape = tuple(check_bounded("size", s, "input_shape", "--input-shape") for s in input_shape)
    batch_size = check_bounded("batch_size", batch_size, flag="--batch-size")
    check_bounded("rounds", rounds, flag="--rounds")
    check_bounded("steps", steps_per_round, "steps_per_round", "--steps")
    check_bounded("warmup", warmup)
    check_input_batch(batch_size, shape, batch=spell("`batch_size`", "--batch-size"),
                      shape=spell("`input_shape`", "--input-shape"))
    return shape, batch_size


@contextlib.contextmanager
def _policy(name):
    """Build under a dtype policy, then restore the previous one."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def overhead_table(names, *, input_shape=(32, 32, 3), batch_size=128, num_classes=10, rounds=5,
                   steps_per_round=5, warmup=3, seed=0, memory=False, flops=True, precision=None):
    """One row per model: params, FLOPs/image, step times, ratio to its backbone, throughputs, peak memory.

    With `precision` (a Keras dtype policy such as "mixed_bfloat16") the model is built under that policy and
    its baseline is the same model in float32, timed in the same interleaved rounds.
    """
    input_shape, batch_size = check_timing(input_shape, batch_size, rounds, steps_per_round, warmup)
    check_bounded("num_classes", num_classes)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch_size, *input_shape)).astype("float32")
    y = rng.integers(0, num_classes, size=batch_size).astype("int32")
    rows = []
    for name in names:
        keras.backend.clear_session()
        keras.utils.set_random_seed(seed)
        info = model_info(name)
        if precision:
            with _policy(precision):
                model = build_model(name, input_shape=input_shape, num_classes=num_classes)
            base = (f"{name} float32", (name, {}))
        else:
            model = build_model(name, input_shape=input_shape, num_classes=num_classes)
            base = baseline_of(name)
        model_flops = flops_per_image(model, input_shape) if flops else None
        steps = {name: _step_fn(model, x, y)}
        if base is not None:
            label, (base_name, base_knobs) = base
            baseline = build_model(base_name, input_shape=input_shape, num_classes=num_classes, **base_knobs)
            steps["baseline"] = _step_fn(baseline, x, y)
        samples = time_step_samples(steps, rounds=rounds, steps_per_round=steps_per_round, warmup=warmup)
        times = {k: statistics.median(v) for k, v in samples.items()}
        ratio = ratio_spread(samples, name, "baseline") if base is not None else (float("nan"),) * 3
        infer = time_steps({name: functools.partial(model.predict_on_batch, x)}, rounds=rounds,
                           steps_per_round=steps_per_round, warmup=warmup)[name]
        rows.append({
            "model": name,
            "family": info.family,
            "baseline": label if base is not None else "",
            "params": int(model.count_params()),
            "mflops_per_image": model_flops / 1e6 if model_flops else float("nan"),
            "step_ms": 1e3 * times[name],
            "baseline_step_ms": 1e3 * times["baseline"] if base is not None else float("nan"),
            "ratio": ratio[0],
            "ratio_min": ratio[1],
            "ratio_max": ratio[2],
            "images_per_s": batch_size / times[name],
            "inference_images_per_s": batch_size / infer,
            "peak_train_mib": measure_memory(name, input_shape, batch_size) if memory else float("nan"),
        })
    return rows


def print_table(rows, file=None):
    file = file or sys.stdout
    print(f"{'model':<34} {'params':>11} {'MFLOPs':>8} {'step ms':>9} {'backbone ms':>12} {'ratio [min-max]':>19} "
          f"{'train img/s':>12} {'infer img/s':>12} {'peak MiB':>9}", file=file)
    for r in rows:
        spread = f"{r['ratio']:.3f} [{r['ratio_min']:.2f}-{r['ratio_max']:.2f}]" if r["ratio"] == r["ratio"] else "-"
        print(f"{r['model']:<34} {r['params']:>11,} {r['mflops_per_image']:>8.1f} {r['step_ms']:>9.1f} "
              f"{r['baseline_step_ms']:>12.1f} {spread:>19} {r['images_per_s']:>12.0f} "
              f"{r['inference_images_per_s']:>12.0f} {r['peak_train_mib']:>9.0f}", file=file)


def backbone_overhead_table(backbone, *, mechanisms=None, taps="blocks", input_shape=(224, 224, 3), batch_size=16,
                            num_classes=10, rounds=5, steps_per_round=5, warmup=2, seed=0):
    """Training-step time of the layer-attended head on a backbone against the bare backbone with a pooled
    linear head (global average pooling + Dense), every variant timed in the same interleaved rounds."""
    mechanisms = list(mechanisms or MECHANISMS)
    input_shape, batch_size = check_timing(input_shape, batch_size, rounds, steps_per_round, warmup)
    check_bounded("num_classes", num_classes)
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 255, size=(batch_size, *input_shape)).astype("float32")
    y = rng.integers(0, num_classes, size=batch_size).astype("int32")
    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    bare = resolve_backbone(backbone, input_shape=input_shape)
    pooled = keras.layers.GlobalAveragePooling2D(name="avg_pool")(bare.output)
    models = {"backbone + linear": keras.Model(bare.input, keras.layers.Dense(num_classes, name="logits")(pooled))}
    for mechanism in mechanisms:
        models[mechanism] = layer_attended(backbone, taps=taps, mechanism=mechanism, num_classes=num_classes,
                                           input_shape=input_shape)
    steps = {k: _step_fn(m, x, y) for k, m in models.items()}
    samples = time_step_samples(steps, rounds=rounds, steps_per_round=steps_per_round, warmup=warmup)
    base = "backbone + linear"
    rows = []
    for key, model in models.items():
        ratio = ratio_spread(samples, key, base) if key != base else (1.0, 1.0, 1.0)
        step = statistics.median(samples[key])
        rows.append({
            "model": f"{backbone} {key}" if key == base else f"{backbone} {key} ({taps})",
            "family": "backbone", "baseline": base, "params": int(model.count_params()),
            "mflops_per_image": float("nan"), "step_ms": 1e3 * step,
            "baseline_step_ms": 1e3 * statistics.median(samples[base]),
            "ratio": ratio[0], "ratio_min": ratio[1], "ratio_max": ratio[2],
            "images_per_s": batch_size / step, "inference_images_per_s": float("nan"),
            "peak_train_mib": float("nan"),
        })
    return rows


def main_bench(args):
    if args.csv:
        check_output_file(args.csv, option="--csv", flag=None)
    check_timing(args.input_shape, args.batch_size, args.rounds, args.steps, 3)
    if args.backbone:
        rows = []
        for backbone in args.backbone:
            rows += backbone_overhead_table(backbone, mechanisms=args.patterns or None, taps=args.taps,
                                            input_shape=tuple(args.input_shape), batch_size=args.batch_size,
                                            rounds=args.rounds, steps_per_round=args.steps)
        print(f"backend {keras.backend.backend()}, input {tuple(args.input_shape)}, batch {args.batch_size}, "
              f"median of {args.rounds} interleaved rounds x {args.steps} steps (ratio: median and range of the "
              "per-round ratios)")
        print_table(rows)
        if args.csv:
            write_csv(rows, args.csv)
        return 0
    names = resolve_models(args.patterns)
    if not names:
        raise ValueError(f"No registered model matches {args.patterns!r}.")
    rows = overhead_table(names, input_shape=tuple(args.input_shape), batch_size=args.batch_size,
                          rounds=args.rounds, steps_per_round=args.steps, memory=args.memory,
                          precision=args.precision, flops=not args.precision)
    print(f"backend {keras.backend.backend()}, input {tuple(args.input_shape)}, batch {args.batch_size}, "
          f"median of {args.rounds} interleaved rounds x {args.steps} steps")
    print_table(rows)
    if args.csv:
        write_csv(rows, args.csv)
    return 0
