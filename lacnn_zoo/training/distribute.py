"""Data-parallel training on several devices and machines, through the engines Keras already has.

    --distribute none          one device (the default)
    --distribute mirrored      every local accelerator: tf.distribute.MirroredStrategy (TensorFlow backend) or
                               keras.distribution.DataParallel (JAX backend)
    --distribute multi-worker  several machines: tf.distribute.MultiWorkerMirroredStrategy configured from
                               TF_CONFIG (TensorFlow), or keras.distribution.initialize() then DataParallel over
                               every process's devices (JAX: KERAS_DISTRIBUTION_JOB_ADDRESSES,
                               KERAS_DISTRIBUTION_NUM_PROCESSES, KERAS_DISTRIBUTION_PROCESS_ID)

The batch size is global (split over the replicas) and the learning rate is used as given; `scale_lr`
multiplies it by the number of replicas (the linear scaling rule of Goyal et al. 2017, for a batch size
raised by the same factor). Only the chief writes: the run folder, its lock, checkpoints and logs; the other
workers train and write nothing (they read the chief's backup to resume, so the run folder must be on a file
system every worker sees, as for Keras' BackupAndRestore).
"""

import contextlib
import dataclasses
import json
import os

import keras

from lacnn_zoo.compat import per_replica_reduction, symbolic_build
from lacnn_zoo.options import DISTRIBUTES  # noqa: E402  (Keras-free, for the command line)

__all__ = ["JAX_PROCESS_VARIABLES", "Distribution", "check_distribute", "fitting", "setup", "shard_by_data"]

JAX_PROCESS_VARIABLES = (
    "KERAS_DISTRIBUTION_JOB_ADDRESSES", "KERAS_DISTRIBUTION_NUM_PROCESSES", "KERAS_DISTRIBUTION_PROCESS_ID")


@dataclasses.dataclass
class Distribution:
    """How a run is spread: `scope()` is where the model is built and compiled.

    Args:
        kind: 'none', 'mirrored' or 'multi-worker' (`DISTRIBUTES`).
        replicas: the number of replicas (devices) a global batch is split over.
        is_chief: whether this process writes the run (the only one that does).
        worker: this worker's name in messages, e.g. "chief", "worker 1" or "process 0".
        strategy: the `tf.distribute` strategy (TensorFlow backend), or None.
        distribution: the `keras.distribution.Distribution` (JAX backend), or None.
        processes: the number of JAX processes (each feeds its own share of every batch).
        process: this JAX process's index.
    """

    kind: str
    replicas: int = 1
    is_chief: bool = True
    worker: str = "chief"
    strategy: object = None  # a tf.distribute strategy (TensorFlow backend)
    distribution: object = None  # a keras.distribution.Distribution (JAX backend)
    processes: int = 1  # JAX processes (each feeds its own share of every batch)
    process: int = 0

    def scope(self):
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()

    def describe(self):
        if self.kind == "none":
            return "one device"
        engine = type(self.strategy or self.distribution).__name__
        return f"{engine} over {self.replicas} replicas ({self.worker})"

    def close(self):
        """Undo a global Keras distribution (JAX) so that later models in this process are not sharded."""
        if self.distribution is not None:
            keras.distribution.set_distribution(None)


def check_distribute(distribute):
    """`distribute` checked, None and False read as 'none'.

    Args:
        distribute: 'none', 'mirrored', 'multi-worker', None or False.

    Returns:
        The name of the distribution, one of `DISTRIBUTES`.

    Raises:
        ValueError: `distribute` is not one of `DISTRIBUTES`.
    """
    distribute = "none" if distribute in (None, False) else distribute
    if distribute not in DISTRIBUTES:
        raise ValueError(f"`distribute` must be one of {', '.join(DISTRIBUTES)}; received distribute={distribute!r}.")
    return distribute


def setup(distribute):
    """The `Distribution` for 'none', 'mirrored' or 'multi-worker' on the current Keras backend.

    TensorFlow's multi-worker strategy must be created before any other TensorFlow operation of the
    process (collective ops are configured at start-up): call this first.

    Args:
        distribute: 'none', 'mirrored' or 'multi-worker' (None or False: 'none'). 'multi-worker' reads the
            cluster from TF_CONFIG (TensorFlow) or from `JAX_PROCESS_VARIABLES` (JAX).

    Returns:
        A `Distribution`; on JAX its distribution is also set as Keras' global one (`Distribution.close` undoes
            it).

    Raises:
        ValueError: `distribute` is unknown, the backend is neither TensorFlow nor JAX (for a distribution other
            than 'none'), or the cluster's environment variables are missing or invalid.
    """
    distribute = check_distribute(distribute)
    if distribute == "none":
        return Distribution("none")
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return _tensorflow(distribute)
    if backend == "jax":
        return _jax(distribute)
    raise ValueError(
        f"`distribute`={distribute!r} needs the TensorFlow or JAX backend; this process runs Keras on {backend!r} "
        "(set KERAS_BACKEND=tensorflow or jax)."
    )


def _tensorflow(distribute):
    import tensorflow as tf

    if distribute == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        cpus = tf.config.list_logical_devices("CPU")
        devices = [d.name for d in (gpus or cpus)]  # several logical CPUs only where someone configured them
        strategy = tf.distribute.MirroredStrategy(devices=devices)
        return Distribution(distribute, replicas=strategy.num_replicas_in_sync, strategy=strategy)
    config = _tf_config()
    task = config["task"]
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    chief = task["type"] == "chief" or (task["type"] == "worker" and int(task["index"]) == 0
                                        and "chief" not in config["cluster"])
    return Distribution(distribute, replicas=strategy.num_replicas_in_sync, is_chief=chief,
                        worker=f"{task['type']} {task['index']}", strategy=strategy)


def _tf_config():
    """TF_CONFIG, checked: {"cluster": {"worker": ["host:port", ...], ...}, "task": {"type": ..., "index": ...}}."""
    text = os.environ.get("TF_CONFIG")
    example = ('TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
               '"task": {"type": "worker", "index": 0}}\'')
    if not text:
        raise ValueError(
            f"`distribute`='multi-worker' reads the cluster from TF_CONFIG, which is not set; e.g. {example}")
    try:
        config = json.loads(text)
        cluster, task = config["cluster"], config["task"]
        members = cluster[task["type"]]
        if not isinstance(members, list) or not 0 <= int(task["index"]) < len(members):
            raise ValueError("task index out of range")
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"TF_CONFIG is not a valid cluster description ({e}); expected e.g. {example}") from None
    return config


def _jax(distribute):
    import jax

    if distribute == "multi-worker":
        missing = [v for v in JAX_PROCESS_VARIABLES if v not in os.environ]
        if missing:
            raise ValueError(
                f"`distribute`='multi-worker' on JAX reads the processes from {', '.join(JAX_PROCESS_VARIABLES)}; "
                f"not set: {', '.join(missing)}."
            )
        # Collectives between CPU devices of several processes go through gloo (GPUs use NCCL either way);
        # set before the backend starts, without asking which backend it is (asking starts it).
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        keras.distribution.initialize()

    devices = keras.distribution.list_devices()
    distribution = keras.distribution.DataParallel(devices=devices)
    keras.distribution.set_distribution(distribution)
    index = jax.process_index()
    return Distribution(distribute, replicas=len(devices), is_chief=index == 0, worker=f"process {index}",
                        distribution=distribution, processes=jax.process_count(), process=index)


def shard_by_data(ds):
    """Shard a tf.data pipeline over the workers by element (its sources are in-memory tensors, not files).

    Args:
        ds: a `tf.data.Dataset`.

    Returns:
        The same pipeline with the `AutoShardPolicy.DATA` auto-shard option.
    """
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options)


@contextlib.contextmanager
def fitting(model, dist, sample_batch):
    """Around `fit`, what TF's multi-worker strategy needs from Keras 3.15, where two steps of its fit fail
    (keras-team/keras#20585, still open in Keras 3.16); `sample_batch()` gives a local (x, y) batch of the data:

    - the symbolic build passes a whole (x, y) structure to `MultiWorkerMirroredStrategy.reduce`: the model's
      loss, metrics and optimizer state are built here instead, in the strategy's scope, from a local batch;
    - the per-step logs (scalars) are averaged over the replicas with `reduce("MEAN", v, axis=0)`, which a
      scalar has no axis for: while this fit runs, scalars are averaged with `axis=None` (the same mean).

    Nothing changes for any other strategy or backend, and Keras' function is put back afterwards.

    Args:
        model: the compiled Keras model about to be fitted.
        dist: the run's `Distribution`.
        sample_batch: a function of no arguments returning a local `(x, y)` batch (called only for
            TensorFlow's multi-worker strategy).
    """
    if dist.kind != "multi-worker" or dist.strategy is None:
        yield
        return

    def scalars_by_axis_none(original):
        def reduce(values, strategy, reduction="auto"):
            if reduction not in ("auto", "mean"):
                return original(values, strategy, reduction)

            def mean(v):
                rank = getattr(getattr(v, "values", [v])[0], "shape", None)
                if rank is not None and rank.rank == 0:
                    return strategy.reduce("MEAN", v, axis=None)
                return original(v, strategy, reduction)

            return keras.tree.map_structure(mean, values)

        return reduce

    with symbolic_build(model, sample_batch(), scope=dist.strategy.scope()), \
            per_replica_reduction(scalars_by_axis_none):
        yield
