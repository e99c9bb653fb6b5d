"""Attention-augmented convolution: time and peak memory against a tiling implementation and Keras MHA.

    python -m lacnn_zoo.experiments.bench_aa              # 16x16, Nh=8, batch 32, Fout=Cin=160 (WRN stage 1)
    python -m lacnn_zoo.experiments.bench_aa --sizes 32 16   # also 32x32: minutes and several GiB on a CPU

Forward + backward time of one training step is measured in one process, in
interleaved rounds of `--steps` steps each after warm-up; the median over the
rounds and its range are printed, and the ratio to keras_mha as the median
(range) of the per-round ratios, so a slow round slows every variant alike:
  aa_layer      AugmentedConv2D (conv branch + relative attention), this package, default
                query_chunk="auto" (queries in blocks under keras.remat where the logits exceed the budget)
  aa_image_loop the same layer with image_loop=True: one image at a time (keras.ops.map), each under keras.remat
  aa_unblocked  the same layer with query_chunk=None: all (B, Nh, HW, HW) logits at once
  aa_attention  its attention branch alone (no conv branch)
  aa_tiled      the same attention with the relative logits tiled to [B, Nh, H, W, H, W]
                and transposed, as public ports do (written here, for comparison)
  keras_mha     keras.layers.MultiHeadAttention over the flattened pixels, no relative logits
Peak memory is the growth of the peak resident set (Linux VmHWM, reset through
/proc/self/clear_refs) over one training step at the full batch, after a
warm-up step at batch 1 that traces and compiles without allocating the
batch's working set; each variant runs in a fresh child process, so one
variant's allocator cache cannot hide another's peak. Progress goes to stderr, the figures to stdout.
"""

import argparse
import functools
import os
import statistics
import subprocess
import sys
import time

import keras
import numpy as np
from keras import layers, ops

from lacnn_zoo.errors import run_command
from lacnn_zoo.experiments.bench import peak_step_memory_mib, ratio_spread, time_step_samples
from lacnn_zoo.io import check_output_file, write_json
from lacnn_zoo.layers.augmented_conv import AugmentedConv2D, attention_memory_bytes, relative_logits_1d
from lacnn_zoo.options import ArgumentParser, bounded, check_fits_in_memory

VARIANTS = ("aa_layer", "aa_image_loop", "aa_unblocked", "aa_attention", "aa_tiled", "keras_mha")


class TiledRelativeAttention(AugmentedConv2D):
    """The same layer, but the relative logits are materialised as tiled [B, Nh, H, W, H, W] copies."""

    def attention_heads(self, q, k, v):
        height, width = self.grid
        pixels = height * width
        dkh = q.shape[-1]
        logits = ops.matmul(ops.reshape(q, (-1, self.heads, pixels, dkh)),
                            ops.transpose(ops.reshape(k, (-1, self.heads, pixels, dkh)), (0, 1, 3, 2)))
        rw = ops.tile(ops.expand_dims(relative_logits_1d(q, self.rel_width), 4), (1, 1, 1, 1, height, 1))
        rh = relative_logits_1d(ops.transpose(q, (0, 1, 3, 2, 4)), self.rel_height)  # [.., x_i, y_i, y_j]
        rh = ops.tile(ops.expand_dims(rh, 4), (1, 1, 1, 1, width, 1))  # [.., x_i, y_i, x_j, y_j]
        rh = ops.transpose(rh, (0, 1, 3, 2, 5, 4))  # [.., y_i, x_i, y_j, x_j]
        rw = ops.reshape(rw, (-1, self.heads, pixels, pixels))
        logits = logits + rw + ops.reshape(rh, (-1, self.heads, pixels, pixels))
        return ops.matmul(ops.softmax(logits, axis=-1), ops.reshape(v, (-1, self.heads, pixels, v.shape[-1])))


class _Branch(layers.Layer):
    """Wraps a layer's `attention_branch` so it can be trained on its own."""

    def __init__(self, inner, **kwargs):
        super().__init__(**kwargs)
        self.inner = inner

    def build(self, input_shape):
        self.inner.build(input_shape)

    def call(self, x):
        return self.inner.attention_branch(x)


def build_variant(variant, size, channels, heads, dk, dv):
    inputs = keras.Input((size, size, channels))
    if variant == "aa_layer":
        out = AugmentedConv2D(channels, dk=dk, dv=dv, heads=heads)(inputs)
    elif variant == "aa_image_loop":
        out = AugmentedConv2D(channels, dk=dk, dv=dv, heads=heads, image_loop=True)(inputs)
    elif variant == "aa_unblocked":
        out = AugmentedConv2D(channels, dk=dk, dv=dv, heads=heads, query_chunk=None)(inputs)
    elif variant == "aa_attention":
        out = _Branch(AugmentedConv2D(channels, dk=dk, dv=dv, heads=heads))(inputs)
    elif variant == "aa_tiled":
        out = _Branch(TiledRelativeAttention(channels, dk=dk, dv=dv, heads=heads, query_chunk=None))(inputs)
    elif variant == "keras_mha":
        flat = layers.Reshape((size * size, channels))(inputs)
        out = layers.MultiHeadAttention(heads, key_dim=dk // heads, value_dim=dv // heads, output_shape=dv)(flat, flat)
    else:
        raise ValueError(f"`variant` must be one of {VARIANTS}; received {variant!r}.")
    model = keras.Model(inputs, out)
    model.compile(optimizer=keras.optimizers.SGD(1e-3), loss="mse")
    return model


def _batch(model, batch, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, *model.input_shape[1:])).astype("float32")
    y = np.zeros((batch, *model.output_shape[1:]), "float32")
    return x, y


def peak_memory_child(variant, size, channels, heads, dk, dv, batch):
    """Run in a fresh process: MiB of peak-RSS growth over one training step after a batch-1 warm-up."""
    model = build_variant(variant, size, channels, heads, dk, dv)
    x, y = _batch(model, batch)
    return peak_step_memory_mib(lambda: model.train_on_batch(x, y), lambda: model.train_on_batch(x[:1], y[:1]))


def measure_memory(variant, size, args):
    code = (
        "import json, sys; from lacnn_zoo.experiments.bench_aa import peak_memory_child; "
        f"print(json.dumps(peak_memory_child({variant!r}, {size}, {args.channels}, {args.heads}, "
        f"{args.dk}, {args.dv}, {args.batch_size})))"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def measure_times(size, args, log=lambda text: None):
    """Seconds per training step of every variant in each round: {variant: [round, ...]}."""
    log(f"{size}x{size}: building the {len(VARIANTS)} variants, {args.warmup} warm-up steps each ...")
    models = {v: build_variant(v, size, args.channels, args.heads, args.dk, args.dv) for v in VARIANTS}
    steps = {}
    for v, m in models.items():
        x, y = _batch(m, args.batch_size)
        steps[v] = functools.partial(m.train_on_batch, x, y)
    return time_step_samples(steps, rounds=args.rounds, steps_per_round=args.steps, warmup=args.warmup,
                             progress=lambda text: log(f"{size}x{size}: {text}"))


def main(argv=None):
    parser = ArgumentParser(prog="python -m lacnn_zoo.experiments.bench_aa", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=bounded("image_side"), nargs="+", default=[16],
                        help="image sides to measure, each HxH (default: 16)")
    parser.add_argument("--batch-size", type=bounded("batch_size"), default=32)
    parser.add_argument("--channels", type=bounded("size"), default=160, help="input channels = Fout")
    parser.add_argument("--heads", type=bounded("size"), default=8)
    parser.add_argument("--dk", type=bounded("size"), default=32)
    parser.add_argument("--dv", type=bounded("size"), default=16)
    parser.add_argument("--rounds", type=bounded("rounds"), default=5)
    parser.add_argument("--steps", type=bounded("steps"), default=5, help="timed training steps per variant per round")
    parser.add_argument("--warmup", type=bounded("warmup"), default=2)
    parser.add_argument("--no-memory", action="store_true", help="skip the child-process memory measurements")
    parser.add_argument("--json", help="also write the figures as JSON")
    parser.add_argument("--debug", action="store_true", help="print the full traceback of an unexpected error")
    args = parser.parse_args(argv)
    try:
        for size in args.sizes:  # aa_unblocked holds every logit of the batch at once
            check_fits_in_memory(attention_memory_bytes(size, size, args.heads, batch=args.batch_size),
                                 f"The attention logits of --batch-size {args.batch_size} x --heads {args.heads} at "
                                 f"--sizes {size}")
    except ValueError as e:
        parser.error(str(e))
    if args.json:
        try:
            check_output_file(args.json, option="--json", flag=None)
        except OSError as e:
            parser.error(str(e))
    return run_command("bench_aa", _run, args)


def _run(args):
    start = time.perf_counter()

    def log(text):
        print(f"bench_aa: {text} ({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)

    print(f"backend {keras.backend.backend()}, batch {args.batch_size}, Cin=Fout={args.channels}, "
          f"Nh={args.heads}, dk={args.dk}, dv={args.dv}; forward+backward (one SGD step); median [range] over "
          f"{args.rounds} interleaved rounds of {args.steps} steps")
    results = []
    for size in args.sizes:
        samples = measure_times(size, args, log)
        memory = {}
        for i, v in enumerate([] if args.no_memory else VARIANTS):
            log(f"{size}x{size}: peak memory of {v} in a child process ({i + 1}/{len(VARIANTS)}) ...")
            memory[v] = measure_memory(v, size, args)
        logits_bytes = attention_memory_bytes(size, size, args.heads, batch=args.batch_size)
        print(f"\n{size}x{size}: logits tensor [B, Nh, HW, HW] = {logits_bytes / 2**20:.0f} MiB")
        print(f"  {'variant':<14} {'step ms [min-max]':>24} {'vs keras_mha [min-max]':>24} {'peak MiB':>9}")
        for v in VARIANTS:
            step = statistics.median(samples[v])
            ratio = ratio_spread(samples, v, "keras_mha")
            mem = memory.get(v, float("nan"))
            step_text = f"{1e3 * step:.1f} [{1e3 * min(samples[v]):.1f}-{1e3 * max(samples[v]):.1f}]"
            ratio_text = f"{ratio[0]:.2f}x [{ratio[1]:.2f}-{ratio[2]:.2f}]"
            print(f"  {v:<14} {step_text:>24} {ratio_text:>24} {mem:>9.0f}")
            results.append({"size": size, "variant": v, "step_ms": 1e3 * step,
                             "step_ms_min": 1e3 * min(samples[v]), "step_ms_max": 1e3 * max(samples[v]),
                             "ratio_to_keras_mha": ratio[0], "ratio_min": ratio[1], "ratio_max": ratio[2],
                             "peak_mib": mem})
    if args.json:
        write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
