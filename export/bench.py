"""Inference speed of every deployment runtime, each in its own process, at several batch sizes.

    python -m export.bench                                   # plain_cnn, resnet20, lacnn_static_vector at 32x32x3
    python -m export.bench resnet20 --batch-sizes 1 32 128 --rounds 5 --calls 5
    python -m export.bench resnet20 --profile profiles/      # onnxruntime per-operator profile as well

For each model the parent process builds it at `--input-shape` (random weights, BatchNorm statistics
calibrated on random images), exports it to a temporary folder with `export_model(format="all",
quantize="int8")` (parity-checked; int8 calibrated on random images: speed does not depend on the weights,
and accuracy is `python -m export.validate`'s job on a trained run), then starts one worker process per
runtime:

    keras               `tf.function(lambda x: model(x, training=False))` on the loaded .keras model (the reference)
    keras_predict       `model.predict_on_batch(x)`, for comparison with the usual Keras call
    saved_model         `tf.saved_model.load(...).serve(x)`
    onnxruntime         model.onnx, the session options of docs/deployment.md's snippets
    onnxruntime_int8    model_int8.onnx (static QDQ), same options
    litert              model.tflite through ai_edge_litert's Interpreter (XNNPACK)
    litert_int8         model_int8.tflite, same interpreter

TensorFlow is never imported in the onnxruntime and LiteRT workers (TensorFlow's thread pools slow
onnxruntime in a shared process). Every call's output is materialised as a NumPy array. The parent drives
the workers in interleaved rounds (order rotated each round), one worker busy at a time: every worker
warms up at every batch size first, then each round times `--calls` calls per (runtime, batch), so each
point has rounds x calls timed calls (>= 20). Reported: median ms per call, spread (25th-75th percentile
as a percentage of the median), the fastest call (min ms: what a quiet machine gives), images/s, GFLOP/s
(forward FLOPs per image, as `lacnn-zoo bench` counts them, a multiply-add counting two) and the ratio of
images/s to the Keras reference at each batch size (of the medians over all calls, and its
range over the rounds: within a round the runtimes' blocks at one batch size run back to back, so a ratio
per round is less exposed to a machine whose load changes), and the ratio of the fastest calls.
"""

import argparse
import contextlib
import json
import os
import re
import secrets
import shutil
import stat
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

from export.runtimes import Runner, physical_cores
from export.table import runtime_artifacts, runtime_format

# Lazy imports: the onnxruntime and LiteRT workers run this module and must not load TensorFlow, which any
# import of lacnn_zoo (its eager registration) or of export.core brings in; the parent imports them when used.

DEFAULT_MODELS = ["plain_cnn", "resnet20", "lacnn_static_vector"]
# The Keras references, then the runner of each export format and of its int8 artifact (`export.table`).
KERAS_ARTIFACT = {"keras": "model.keras", "keras_predict": "model.keras"}
ARTIFACT = {**KERAS_ARTIFACT, **runtime_artifacts()}
RUNTIMES = tuple(ARTIFACT)
REFERENCE = "keras"
# Each model's artifacts go to a folder of the temporary directory whose name (`lacnn-bench-<pid>-<8 hex>`) and
# marker (the owner's pid and start time) say it is this tool's; a later run removes those whose owner died.
WORKSPACE_PREFIX = "lacnn-bench-"
WORKSPACE_MARKER = ".lacnn-bench-owner"
_WORKSPACE = re.compile(rf"^{re.escape(WORKSPACE_PREFIX)}(\d+)-[0-9a-f]{{8}}$")


# ----------------------------------------------------------------------------------------------- the worker

def _load_runtime(runtime, path, threads, profile_prefix):
    """`call(x) -> np.ndarray` for one runtime; only the keras/saved_model runtimes import TensorFlow."""
    if runtime in KERAS_ARTIFACT:
        import tensorflow as tf

        from export.core import load_trained_model

        model = load_trained_model(path)
        if runtime == "keras_predict":
            return lambda x: model.predict_on_batch(x)
        forward = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
        return lambda x: forward(x).numpy()
    fmt = runtime_format(runtime)  # the export format whose runner this is (`export.table`)
    if fmt is not None and profile_prefix and fmt.profiler:
        return fmt.load("profiler")(path, threads, profile_prefix)
    if fmt is not None and not fmt.suffix:  # a folder artifact (SavedModel): its runner, no metadata to read
        return fmt.load("runner")(path, threads)[2]

    return Runner(path, threads)


def worker(runtime, path, threads=None, profile_prefix=None):
    """Serve timing requests (JSON lines on stdin) for one runtime; answers go to the original stdout, everything
    that libraries print goes to stderr."""
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    call = _load_runtime(runtime, path, threads, profile_prefix)
    protocol.write(json.dumps({"ready": True, "pid": os.getpid(), "runtime": runtime,
                               "tensorflow_loaded": "tensorflow" in sys.modules}) + "\n")
    inputs = {}
    for line in sys.stdin:
        request = json.loads(line)
        if request.get("stop"):
            break
        shape = tuple(request["shape"])
        if shape not in inputs:
            inputs[shape] = np.random.default_rng(0).normal(size=shape).astype("float32")
        x = inputs[shape]
        out = None
        for _ in range(request.get("warmup", 0)):
            out = call(x)
        times = []
        for _ in range(request["calls"]):
            start = time.perf_counter()
            out = call(x)
            times.append(time.perf_counter() - start)
        protocol.write(json.dumps({"pid": os.getpid(), "runtime": runtime, "times": times,
                                   "output_shape": None if out is None else list(np.shape(out))}) + "\n")
    profile = call.end_profiling() if hasattr(call, "end_profiling") else None
    protocol.write(json.dumps({"done": True, "pid": os.getpid(), "profile": profile}) + "\n")
    return 0


# ----------------------------------------------------------------------------------------------- the parent

class Worker:
    def __init__(self, runtime, path, threads=None, profile_prefix=None):
        command = [sys.executable, "-m", "export.bench", "--worker", runtime, path]
        if threads:
            command += ["--threads", str(threads)]
        if profile_prefix:
            command += ["--profile-prefix", profile_prefix]
        self.runtime = runtime
        self.log = tempfile.TemporaryFile("w+")
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3")}
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
                                        text=True, env=env)
        self.hello = self._read()

    def _read(self):
        line = self.process.stdout.readline()
        if not line:
            self.process.wait()
            self.log.seek(0)
            tail = " | ".join(self.log.read().strip().splitlines()[-3:])
            raise RuntimeError(f"The {self.runtime} worker exited ({self.process.returncode}): {tail}")
        return json.loads(line)

    def ask(self, **request):
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        return self._read()

    def close(self):
        result = None
        if self.process.poll() is None:
            result = self.ask(stop=True)
            self.process.stdin.close()
            self.process.wait(timeout=60)
        self.log.close()
        return result


# ------------------------------------------------------------------------------------------ the work folders

def _process_start(pid):
    """When process `pid` started (clock ticks since boot, /proc/<pid>/stat field 22), or None where unknown."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive(pid, started):
    """Whether the process that wrote a marker (`pid`, started at `started`) still runs; a pid that another
    process took since is not it. A pid this user may not signal counts as alive: nothing is removed on a doubt."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    now = _process_start(pid)
    return started is None or now is None or now == started


def _read_marker(folder):
    """The owner record of a work folder (`{"pid", "started"}`), or None if it has no readable marker."""
    path = os.path.join(folder, WORKSPACE_MARKER)
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return None
        with open(path) as f:
            marker = json.loads(f.read(4096))
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) else None


def remove_leftovers(root=None):
    """Remove the work folders that killed runs of this tool left in `root` (default: the temporary directory):
    only a real folder of this user, named as `workspace` names them, whose marker names the same pid, and whose
    owner no longer runs. (A folder killed before its marker was written is removed only when empty.)"""
    root = root or tempfile.gettempdir()
    removed = []
    with contextlib.suppress(OSError):
        for name in os.listdir(root):
            match = _WORKSPACE.match(name)
            path = os.path.join(root, name)
            try:
                info = os.lstat(path)
            except OSError:
                continue
            if not match or not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
                continue
            pid, marker = int(match.group(1)), _read_marker(path)
            if marker is None:
                if not _alive(pid, None):
                    with contextlib.suppress(OSError):
                        os.rmdir(path)  # fails unless empty
                        removed.append(path)
            elif marker.get("pid") == pid and not _alive(pid, marker.get("started")):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
    return removed


@contextlib.contextmanager
def workspace(root=None):
    """A new work folder in `root` (default: the temporary directory), marked as this process's; removed on exit,
    or by the next run's `remove_leftovers` if this process is killed."""
    root = root or tempfile.gettempdir()
    while True:
        path = os.path.join(root, f"{WORKSPACE_PREFIX}{os.getpid()}-{secrets.token_hex(4)}")
        try:
            os.mkdir(path, 0o700)
            break
        except FileExistsError:
            continue
    try:
        with open(os.path.join(path, WORKSPACE_MARKER), "w") as f:
            json.dump({"pid": os.getpid(), "started": _process_start(os.getpid()), "tool": "python -m export.bench"},
                      f)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# ----------------------------------------------------------------------------------------------- the models

def check_sizes(input_shape, batch_sizes, calibration_images=1):
    """Refuse an input shape or batch sizes whose float32 input batch exceeds this machine's memory."""
    from lacnn_zoo.options import check_bounded, check_input_batch

    shape = [check_bounded("size", s, "input_shape", "--input-shape") for s in input_shape]
    batches = [check_bounded("batch_size", b, "batch_sizes", "--batch-sizes") for b in batch_sizes]
    if len(shape) != 3 or not batches:
        raise ValueError(f"`input_shape` must be (height, width, channels) and `batch_sizes` not empty; received "
                         f"{list(input_shape)!r} and {list(batch_sizes)!r}.")
    from lacnn_zoo.errors import spell

    check_input_batch(max(*batches, calibration_images), shape, batch=spell("`batch_sizes`", "--batch-sizes"),
                      shape=spell("`input_shape`", "--input-shape"))
    return tuple(shape), batches


def prepare(name, folder, input_shape, calibration_images=64, seed=0):
    """Build `name` with calibrated BatchNorm, save it as model.keras and export every format (+ int8)."""
    from lacnn_zoo.options import check_bounded

    calibration_images = check_bounded("examples", calibration_images, "calibration_images")
    input_shape, _ = check_sizes(input_shape, [64], calibration_images)
    import keras

    from export.core import export_model
    from lacnn_zoo import build_model
    from lacnn_zoo.layers import calibrate_batchnorm

    keras.backend.clear_session()
    rng = np.random.default_rng(seed)
    model = build_model(name, input_shape=input_shape)
    calibrate_batchnorm(model, rng.normal(size=(64, *input_shape)).astype("float32"))
    model.save(os.path.join(folder, "model.keras"))
    from lacnn_zoo.experiments import flops_per_image

    flops = flops_per_image(model, input_shape)
    calibration = rng.normal(size=(calibration_images, *input_shape)).astype("float32")
    manifest = export_model(model, os.path.join(folder, "export"), format="all", quantize="int8",
                            quantization_data=(calibration, None, None), max_accuracy_drop=None,
                            calibration_images=calibration_images)
    return {"manifest": manifest, "flops_per_image": flops}


def artifact_path(folder, runtime):
    if runtime in KERAS_ARTIFACT:
        return os.path.join(folder, KERAS_ARTIFACT[runtime])
    return os.path.join(folder, "export", runtime_artifacts()[runtime])


def measure(folder, input_shape, runtimes=RUNTIMES, batch_sizes=(1, 32, 128), rounds=5, calls=5, warmup=5,
            threads=None, profile_dir=None, log=None, label="model"):
    """Timed calls per runtime and batch size: `{runtime: {"pid", "tensorflow_loaded", "times": {batch: [...]}}}`."""
    from lacnn_zoo.options import check_bounded

    for key, value in (("rounds", rounds), ("calls", calls), ("warmup", warmup)):
        check_bounded(key, value, flag=f"--{key}")
    if threads is not None:
        check_bounded("threads", threads, flag="--threads")
    input_shape, batch_sizes = check_sizes(input_shape, batch_sizes)
    workers = {}
    try:
        for runtime in runtimes:
            prefix, fmt = None, runtime_format(runtime)
            if profile_dir and fmt is not None and fmt.profiler:
                prefix = os.path.join(os.path.abspath(profile_dir), f"{label}_{runtime}")
            workers[runtime] = Worker(runtime, artifact_path(folder, runtime), threads, prefix)
        results = {r: {"pid": w.hello["pid"], "tensorflow_loaded": w.hello["tensorflow_loaded"],
                       "times": {b: [] for b in batch_sizes}, "rounds": {b: [] for b in batch_sizes}}
                   for r, w in workers.items()}
        for w in workers.values():  # warm-up: tracing, graph optimisation, tensor allocation per batch size
            for batch in batch_sizes:
                w.ask(shape=[batch, *input_shape], calls=0, warmup=warmup)
        order = list(runtimes)
        for round_index in range(rounds):
            for batch in batch_sizes:  # the runtimes' blocks at one batch size follow each other closely in time
                for runtime in order[round_index % len(order):] + order[:round_index % len(order)]:
                    answer = workers[runtime].ask(shape=[batch, *input_shape], calls=calls, warmup=1)
                    if answer["pid"] != results[runtime]["pid"]:
                        raise RuntimeError(f"{runtime}: answered by another process")
                    results[runtime]["times"][batch].extend(answer["times"])
                    results[runtime]["rounds"][batch].append(statistics.median(answer["times"]))
            if log:
                log(f"  round {round_index + 1}/{rounds} done")
        for runtime, w in list(workers.items()):
            done = w.close()
            del workers[runtime]
            results[runtime]["profile"] = (done or {}).get("profile")
        return results
    finally:
        for w in workers.values():
            w.process.kill()
            w.process.wait()


def summarise(name, results, batch_sizes, flops_per_image=None):
    rows = []
    for batch in batch_sizes:
        reference = statistics.median(results[REFERENCE]["times"][batch]) if REFERENCE in results else None
        for runtime, r in results.items():
            per_round = ([k / t for k, t in zip(results[REFERENCE]["rounds"][batch], r["rounds"][batch])]
                         if REFERENCE in results else [])
            times = np.asarray(r["times"][batch])
            median = float(np.median(times))
            p25, p75 = np.percentile(times, [25, 75])
            rows.append({
                "model": name, "runtime": runtime, "batch": batch, "calls": int(len(times)), "pid": r["pid"],
                "median_ms": 1e3 * median, "min_ms": 1e3 * float(times.min()),
                "x_keras_min": (min(results[REFERENCE]["times"][batch]) / float(times.min())
                                if REFERENCE in results else None),
                "spread_pct": 100 * float(p75 - p25) / median,
                "images_per_s": batch / median,
                "gflops": flops_per_image * batch / median / 1e9 if flops_per_image else None,
                "x_keras": reference / median if reference else None,
                "x_keras_rounds": [min(per_round), max(per_round)] if per_round else None,
            })
    return rows


def onnx_profile_summary(path, top=8):
    """Share of time per ONNX operator type in an onnxruntime profile (kernel time, summed over the run)."""
    with open(path) as f:
        events = json.load(f)
    totals = {}
    for event in events:
        if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time"):
            op = event.get("args", {}).get("op_name", "?")
            totals[op] = totals.get(op, 0) + event.get("dur", 0)
    whole = sum(totals.values()) or 1
    return [(op, 100 * us / whole) for op, us in sorted(totals.items(), key=lambda kv: -kv[1])[:top]]


def print_table(rows, stream=None):
    stream = sys.stdout if stream is None else stream  # today's stdout, not the one of the import
    header = (f"{'model':<22} {'runtime':<17} {'batch':>5} {'calls':>5} {'median ms':>10} {'spread':>7} {'min ms':>8} "
              f"{'images/s':>9} {'GFLOP/s':>8} {'x keras':>8} {'per round':>11} {'x keras min':>11}")
    print(header, file=stream)
    for r in rows:
        ratio = f"{r['x_keras']:.2f}" if r["x_keras"] is not None else "-"
        gflops = f"{r['gflops']:.1f}" if r.get("gflops") is not None else "-"
        rounds = "{:.2f}-{:.2f}".format(*r["x_keras_rounds"]) if r.get("x_keras_rounds") else "-"
        print(f"{r['model']:<22} {r['runtime']:<17} {r['batch']:>5} {r['calls']:>5} {r['median_ms']:>10.3f} "
              f"{r['spread_pct']:>6.1f}% {r['min_ms']:>8.3f} {r['images_per_s']:>9.0f} {gflops:>8} {ratio:>8} "
              f"{rounds:>11} {r['x_keras_min'] or 0:>11.2f}", file=stream)


def import_zoo_options():
    """`lacnn_zoo.options`, imported with TensorFlow's start-up lines on stderr left out (what else the import
    writes there is kept). This process is not one of the zoo's command lines (a keras worker needs the eager
    registration), so `import lacnn_zoo` starts TensorFlow here; a usage error must still be one line."""
    # As the zoo's command lines: quiet unless the user asked for TensorFlow's logs (TF_CPP_MIN_LOG_LEVEL 0 or 1).
    if "lacnn_zoo.options" in sys.modules or os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2") in ("0", "1"):
        import lacnn_zoo.options

        return lacnn_zoo.options
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile("w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import lacnn_zoo.options
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            written = captured.read()
            launch = sys.modules.get("lacnn_zoo.launch")
            with launch.filtered_stderr() if launch else contextlib.nullcontext():
                os.write(2, written)
    return lacnn_zoo.options


def _worker_main(argv):
    """A worker process (started by `Worker`, with options the parent checked): no lacnn_zoo import, which would
    load TensorFlow into the onnxruntime and LiteRT workers."""
    parser = argparse.ArgumentParser(prog="python -m export.bench --worker")
    parser.add_argument("--worker", nargs=2, metavar=("RUNTIME", "PATH"), required=True)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--profile-prefix", default=None)
    args = parser.parse_args(argv)
    return worker(args.worker[0], args.worker[1], args.threads, args.profile_prefix)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--worker" in argv:
        return _worker_main(argv)
    options = import_zoo_options()
    ArgumentParser, bounded, check_input_batch = options.ArgumentParser, options.bounded, options.check_input_batch

    parser = ArgumentParser(prog="python -m export.bench", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("patterns", nargs="*",
                        help="model names or wildcards (default: " + ", ".join(DEFAULT_MODELS) + ")")
    parser.add_argument("--input-shape", type=bounded("size"), nargs=3, default=[32, 32, 3], metavar=("H", "W", "C"))
    parser.add_argument("--batch-sizes", type=bounded("batch_size"), nargs="+", default=[1, 32, 128])
    parser.add_argument("--runtimes", nargs="+", default=list(RUNTIMES), choices=RUNTIMES)
    parser.add_argument("--rounds", type=bounded("rounds"), default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--calls", type=bounded("calls"), default=5,
                        help="timed calls per runtime, batch and round (default 5)")
    parser.add_argument("--warmup", type=bounded("warmup"), default=5,
                        help="untimed calls per runtime and batch first (default 5)")
    parser.add_argument("--threads", type=bounded("threads"), default=None,
                        help="onnxruntime/LiteRT threads (default: physical cores)")
    parser.add_argument("--profile", default=None, metavar="DIR",
                        help="write onnxruntime profiles there and print the time per operator type")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    parser.add_argument("--debug", action="store_true", help="print the full traceback of an unexpected error")
    args = parser.parse_args(argv)
    if args.rounds * args.calls < 20:
        parser.error(f"--rounds x --calls must be at least 20 timed calls per point; received {args.rounds} x "
                     f"{args.calls}.")
    try:  # the model is built and calibrated on 64 images, then timed at each batch size
        check_input_batch(max(*args.batch_sizes, 64), args.input_shape, batch="--batch-sizes", shape="--input-shape")
    except ValueError as e:  # a usage error, as argparse's own: exit 2, one line
        parser.error(str(e))

    from lacnn_zoo.errors import run_command

    return run_command("export.bench", _main, args)


def _main(args):
    if args.json:
        from lacnn_zoo.io import check_output_file

        check_output_file(args.json, option="--json", flag=None)
    from lacnn_zoo.models import resolve_models

    names = resolve_models(args.patterns) if args.patterns else DEFAULT_MODELS
    if not names:
        raise ValueError(f"No registered model matches {args.patterns}.")
    if args.profile:
        os.makedirs(args.profile, exist_ok=True)
    shape = tuple(args.input_shape)

    print(f"# input {shape}, batch sizes {args.batch_sizes}, {args.rounds} rounds x {args.calls} calls per point, "
          f"{args.threads or physical_cores()} onnxruntime/LiteRT threads, one process per runtime", flush=True)
    left = remove_leftovers()
    if left:
        print(f"# removed {len(left)} work folder(s) left by killed runs: {', '.join(left)}", file=sys.stderr)
    rows = []
    for name in names:
        with workspace() as folder:
            print(f"# {name}: exporting (all formats + int8)...", file=sys.stderr, flush=True)
            prepared = prepare(name, folder, shape)
            results = measure(folder, shape, args.runtimes, args.batch_sizes, args.rounds, args.calls, args.warmup,
                              args.threads, args.profile, log=lambda m: print(m, file=sys.stderr, flush=True),
                              label=name)
        model_rows = summarise(name, results, args.batch_sizes, prepared["flops_per_image"])
        print_table(model_rows)
        rows.extend(model_rows)
        for runtime, r in results.items():
            if r.get("profile"):
                print(f"# onnxruntime profile of {name} / {runtime} ({r['profile']}), share of kernel time:")
                print("#   " + ", ".join(f"{op} {share:.0f}%" for op, share in onnx_profile_summary(r["profile"])))
        print(flush=True)
    if args.json:
        from lacnn_zoo.io import write_json

        write_json(args.json, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
