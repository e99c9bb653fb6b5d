"""Data-parallel training: MirroredStrategy on 2 logical CPUs, MultiWorkerMirroredStrategy with 2 processes on
127.0.0.1 (interrupted, then resumed), JAX DataParallel over 2 host devices.

Each case runs in its own processes: logical devices and collective ops are fixed when TensorFlow starts.
"""

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from lacnn_zoo.training.distribute import check_distribute

TIMEOUT_S = 300


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CONFIG", "XLA_FLAGS", "KERAS_BACKEND")}
    env.update(TF_CPP_MIN_LOG_LEVEL="2", **extra)
    return env


def _python(code, env, cwd):
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _losses(run):
    with open(os.path.join(run, "history.csv")) as f:
        return [float(row["loss"]) for row in csv.DictReader(f)]


def test_mirrored_on_two_logical_cpus_follows_the_one_device_loss(tmp_path):
    result = _python(f"""
        import json, tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from lacnn_zoo.training import train
        out = {{}}
        for kind in ("none", "mirrored"):
            r = train("plain_cnn_tiny", epochs=3, batch_size=128, output_dir=r"{tmp_path}/" + kind, verbose=0,
                      tensorboard=False, distribute=kind)
            out[kind] = r.metrics["replicas"]
        # --scale-lr: the optimiser the run compiled starts at learning_rate x replicas
        r = train("plain_cnn_tiny", epochs=1, batch_size=128, learning_rate=0.01, output_dir=r"{tmp_path}/scaled",
                  verbose=0, tensorboard=False, distribute="mirrored", scale_lr=True)
        out["scaled"] = r.model.optimizer.get_config()["learning_rate"]["config"]["initial_learning_rate"]
        print(json.dumps(out))
    """, _env(), tmp_path)
    assert result == {"none": 1, "mirrored": 2, "scaled": pytest.approx(0.02)}
    one, two = _losses(tmp_path / "none"), _losses(tmp_path / "mirrored")
    # Same seed, same global batch: the same trajectory up to BatchNorm's per-replica statistics (64 images
    # each instead of 128: about 3% here). A per-replica batch (2x the global batch) or a doubled learning rate
    # moves the losses by 20-35%.
    for a, b in zip(one, two):
        assert abs(a - b) / a < 0.08, (one, two)
    assert json.load(open(tmp_path / "mirrored" / "metrics.json"))["distribute"] == "mirrored"


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _launch(argvs, env_of, cwd):
    procs = []
    for i, argv in enumerate(argvs):
        procs.append(subprocess.Popen(argv, env=env_of(i), cwd=cwd, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True, start_new_session=True))
    return procs


def _wait(procs):
    """Wait for every process (bounded); end any still running by its pid (and its group); return outputs."""
    deadline = time.monotonic() + TIMEOUT_S
    outputs = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=max(1, deadline - time.monotonic()))
            outputs.append((p.returncode, out, err))
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=30)
    return outputs


CRASH_AFTER_FIRST_EPOCH = """
import sys, keras
from lacnn_zoo.training import train

class Crash(keras.callbacks.Callback):  # every worker stops at the same point: epoch 1 fully saved
    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 1:
            sys.exit(3)

train("plain_cnn_tiny", epochs=3, batch_size=64, output_dir=sys.argv[1], verbose=0, tensorboard=False,
      distribute="multi-worker", callbacks=[Crash()])
"""


def test_multi_worker_run_is_written_by_the_chief_alone_and_resumes(tmp_path):
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}

    def env_of(i):
        return _env(TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}}))

    run, elsewhere = str(tmp_path / "run"), str(tmp_path / "worker-view")
    # First launch, interrupted after epoch 1. The worker is given another folder: it must not create it.
    first = _wait(_launch([[sys.executable, "-c", CRASH_AFTER_FIRST_EPOCH, folder] for folder in (run, elsewhere)],
                          env_of, tmp_path))
    assert [rc for rc, _, _ in first] == [3, 3], [err[-2000:] for _, _, err in first]
    assert not os.path.exists(elsewhere)
    assert len(_losses(run)) == 1 and not os.path.exists(os.path.join(run, "metrics.json"))
    # Resumed from the shared folder by both (the worker reads the chief's backup, writes nothing).
    before = sorted(os.listdir(run))
    second = _wait(_launch([[sys.executable, "-m", "lacnn_zoo", "train", "--resume", "--output-dir", run,
                             "--distribute", "multi-worker", "--verbose", "0"]] * 2, env_of, tmp_path))
    assert [rc for rc, _, _ in second] == [0, 0], [err[-2000:] for _, _, err in second]
    assert "test accuracy" in second[0][1] and "worker 1: training finished" in second[1][1]
    with open(os.path.join(run, "history.csv")) as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [0, 1, 2]  # one writer: no duplicated rows
    metrics = json.load(open(os.path.join(run, "metrics.json")))
    assert metrics["distribute"] == "multi-worker" and metrics["replicas"] == 2 and metrics["epochs"] == 3
    assert metrics["resumed_after_epoch"] == 1
    assert set(os.listdir(run)) <= set(before) | {"metrics.json", "tensorboard"}  # the chief's files only


def test_jax_data_parallel_over_two_host_devices_trains(tmp_path):
    pytest.importorskip("jax")
    result = _python(f"""
        import json
        from lacnn_zoo.training import train
        r = train("plain_cnn_tiny", epochs=1, batch_size=64, output_dir=r"{tmp_path}/run", verbose=0,
                  distribute="mirrored")
        import keras
        print(json.dumps({{"replicas": r.metrics["replicas"], "accuracy": r.metrics["test_accuracy"],
                          "left_set": keras.distribution.distribution() is not None}}))
    """, _env(KERAS_BACKEND="jax", XLA_FLAGS="--xla_force_host_platform_device_count=2"), tmp_path)
    assert result["replicas"] == 2 and not result["left_set"]
    assert result["accuracy"] > 0.3  # ten classes: trained, not chance


JAX_PROCESS = """
import sys
from lacnn_zoo.training import train
r = train("plain_cnn_tiny", epochs=1, batch_size=64, output_dir=sys.argv[1], verbose=0, distribute="multi-worker")
print(r.worker, r.metrics["replicas"] if r.metrics else None)
"""


def test_jax_two_processes_train_one_run_written_by_process_0(tmp_path):
    pytest.importorskip("jax")
    port = _free_ports(1)[0]
    run = str(tmp_path / "run")

    def env_of(i):
        return _env(KERAS_BACKEND="jax", KERAS_DISTRIBUTION_JOB_ADDRESSES=f"127.0.0.1:{port}",
                    KERAS_DISTRIBUTION_NUM_PROCESSES="2", KERAS_DISTRIBUTION_PROCESS_ID=str(i))

    outputs = _wait(_launch([[sys.executable, "-c", JAX_PROCESS, run]] * 2, env_of, tmp_path))
    assert [rc for rc, _, _ in outputs] == [0, 0], [err[-2000:] for _, _, err in outputs]
    assert outputs[0][1].split()[-2:] == ["chief", "2"] and outputs[1][1].split()[-3:] == ["process", "1", "None"]
    assert len(_losses(run)) == 1 and json.load(open(os.path.join(run, "metrics.json")))["replicas"] == 2


def test_bad_distribution_arguments_are_one_line(tmp_path, monkeypatch, capsys):
    from lacnn_zoo import cli

    with pytest.raises(ValueError, match="`distribute` must be one of none, mirrored, multi-worker"):
        check_distribute("horovod")
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert cli.main(["train", "--distribute", "multi-worker", "--output-dir", str(tmp_path / "r")]) == 2
    assert "TF_CONFIG" in capsys.readouterr().err
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 4}}')
    assert cli.main(["train", "--distribute", "multi-worker", "--output-dir", str(tmp_path / "r")]) == 2
    assert "TF_CONFIG is not a valid cluster description" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_gpu_check_reports_the_cpu_run_on_a_machine_without_one(tmp_path, capsys):
    from tuning.gpu_check import accelerators, main

    assert accelerators() == []  # this machine: CPU only
    out = tmp_path / "gpu.json"
    assert main(["--model", "plain_cnn_tiny", "--epochs", "2", "--trials", "1", "--search-epochs", "1",
                 "--out", str(out)]) == 0
    report = json.load(open(out))
    assert set(report["runs"]) == {"cpu"} and "speedup" not in report
    assert report["runs"]["cpu"]["train"]["images_per_s"] > 0 and report["runs"]["cpu"]["search"]["trials"] == 1
    assert "cpu: training plain_cnn_tiny" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:  # out of the option's range: the parser's one-line usage error
        main(["--trials", "0"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 1 and "argument --trials: takes an integer from 1" in err[0], err


def test_gpu_check_reports_the_median_epoch_after_the_first(tmp_path, monkeypatch):
    """The training throughput is the median epoch time (its name says so), the first epoch (tracing) left out:
    worked out by hand from the epoch times recorded in history.csv."""
    import lacnn_zoo.training
    from tuning.gpu_check import train_run

    (tmp_path / "history.csv").write_text("epoch,loss,epoch_time_s\n0,1.0,30.0\n1,0.9,2.0\n2,0.8,2.0\n3,0.7,11.0\n")
    result = type("Result", (), {"metrics": {"test_accuracy": 0.5, "train_wall_time_s": 45.0}})()
    monkeypatch.setattr(lacnn_zoo.training, "train", lambda *args, **kwargs: result)
    run = train_run("plain_cnn_tiny", 4, 64, str(tmp_path), images=1000)
    assert run["epoch_time_s_median"] == 2.0 and run["images_per_s"] == 500.0  # epochs 2, 2, 11: the mean is 5
