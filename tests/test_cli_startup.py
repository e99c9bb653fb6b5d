"""The command line starts light and quiet: help and `list` without TensorFlow, commands without start-up noise;
`import lacnn_zoo` anywhere else still registers every class eagerly."""

import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _python(*args, env=None, timeout=180):
    env = {**os.environ, "PYTHONPATH": ROOT, **(env or {})}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env=env)


def _imported(importtime_stderr):
    """Top-level package names in `python -X importtime` output."""
    names = set()
    for line in importtime_stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            module = line.rsplit("|", 1)[1].strip()
            names.add(module.split(".")[0])
    return names


def test_import_lacnn_zoo_registers_every_class_in_a_fresh_process():
    code = ("import lacnn_zoo, sys, keras; "
            "names = ['ConvBNAct', 'ResidualBlock', 'AugmentedConv2D', 'StaticTrainableVector', 'DynamicRecurrent']; "
            "print(all(keras.saving.get_registered_object('lacnn_zoo>' + n) is not None for n in names), "
            "'lacnn_zoo.models.resnet' in sys.modules, len(lacnn_zoo.list_models()))")
    out = _python("-c", code, env={"TF_CPP_MIN_LOG_LEVEL": "3"})
    assert out.returncode == 0, out.stderr[-2000:]
    registered, models_imported, count = out.stdout.split()
    assert registered == "True" and models_imported == "True" and int(count) >= 20


@pytest.mark.parametrize("argv", [
    ["-m", "lacnn_zoo", "--help"], ["-m", "lacnn_zoo", "train", "--help"], ["-m", "lacnn_zoo", "tune", "--help"],
    ["-m", "lacnn_zoo", "export", "--help"], ["-m", "lacnn_zoo", "list"],
    ["-m", "lacnn_zoo", "list", "resnet*", "--family", "resnet", "--no-params"],
    ["-m", "tuning", "--help"], ["-m", "export", "--help"],
])
def test_help_and_list_leave_tensorflow_and_keras_unimported(argv):
    out = _python("-X", "importtime", *argv)
    assert out.returncode == 0, out.stderr[-2000:]
    imported = _imported(out.stderr)
    assert "lacnn_zoo" in imported or "tuning" in imported or "export" in imported
    assert not imported & {"tensorflow", "keras", "keras_tuner", "numpy"}, sorted(imported)
    assert out.stdout.strip()
    if argv[1] == "tuning":  # the search's entry point depends on the library, not on the zoo's command line
        assert not any(line.rstrip().endswith("lacnn_zoo.cli") for line in out.stderr.splitlines())


def test_list_reads_the_catalogue_and_keeps_its_answers(capsys):
    from lacnn_zoo import cli, list_models, model_info

    with open(os.path.join(ROOT, "lacnn_zoo", "models", "catalogue.json")) as f:
        catalogue = json.load(f)
    assert catalogue["num_classes"] == 10
    assert {(m["name"], m["family"]) for m in catalogue["models"]} == {(n, model_info(n).family)
                                                                     for n in list_models()}
    tiny = next(m for m in catalogue["models"] if m["name"] == "plain_cnn_tiny")
    assert tiny["params"] == model_info("plain_cnn_tiny").num_params(num_classes=10)

    assert cli.main(["list", "plain_cnn_tiny"]) == 0
    assert f"{tiny['params']:,}" in capsys.readouterr().out
    assert cli.main(["list", "plain_cnn_tiny", "--num-classes", "3"]) == 0  # built, as before
    assert f"{model_info('plain_cnn_tiny').num_params(num_classes=3):,}" in capsys.readouterr().out
    assert cli.main(["list", "nothing*"]) == 1
    assert capsys.readouterr().err.strip() == "No model matches 'nothing*'."
    assert cli.main(["list", "--family", "nope"]) == 1
    assert capsys.readouterr().err.strip() == "No model matches None."


def test_a_command_prints_nothing_on_stderr():
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # as a user's shell has it
    out = subprocess.run([sys.executable, "-m", "lacnn_zoo", "info", "plain_cnn_tiny"], capture_output=True,
                         text=True, timeout=180, cwd=ROOT, env={**env, "PYTHONPATH": ROOT})
    assert out.returncode == 0 and json.loads(out.stdout)["name"] == "plain_cnn_tiny"
    assert out.stderr == "", out.stderr


def test_import_lacnn_zoo_is_quiet_unless_tensorflow_s_logs_are_asked_for():
    """As a script or notebook imports it: TensorFlow's start-up lines (banner, oneDNN, cuda drivers, cuInit)
    filtered, the devices still configurable; TF_CPP_MIN_LOG_LEVEL=0 brings the lines back."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    code = "import lacnn_zoo, tensorflow as tf; tf.config.set_visible_devices([], 'GPU')"

    def run(extra):
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180, cwd=ROOT,
                              env={**env, "PYTHONPATH": ROOT, **extra})

    quiet, loud = run({}), run({"TF_CPP_MIN_LOG_LEVEL": "0"})
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr
    assert loud.returncode == 0 and len(loud.stderr.splitlines()) > 1, loud.stderr


def test_the_stderr_filter_drops_known_start_up_lines_and_keeps_every_other(capfd):
    from lacnn_zoo.launch import filtered_stderr

    lines = ["I0000 00:00:1796453689.280668   29108 port.cc:153] oneDNN custom operations are on.",
             "E0000 00:00:1796454507.227390    7042 cuda_platform.cc:52] failed call to cuInit: INTERNAL: (303)",
             "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",
             "fully_quantize: 0, inference_type: 6, input_inference_type: FLOAT32, output_inference_type: FLOAT32",
             "E0000 00:00:1796454507.227390    7042 saver.cc:12] could not write the checkpoint",  # a real error
             "Warning (batchnorm): the zoo's own line"]
    with filtered_stderr(True):
        os.write(2, ("\n".join(lines) + "\n").encode())
    assert capfd.readouterr().err.splitlines() == lines[4:]
    with filtered_stderr(False):  # TF_CPP_MIN_LOG_LEVEL=0 asked for them: untouched
        os.write(2, (lines[2] + "\n").encode())
    assert capfd.readouterr().err.splitlines() == [lines[2]]


def test_launched_as_names_only_the_zoos_command_lines():
    from lacnn_zoo.launch import launched_as

    assert launched_as(["-m"], ["python", "-m", "lacnn_zoo", "--help"]) == "lacnn-zoo"
    assert launched_as(["-m"], ["python", "-X", "importtime", "-Im", "tuning"]) == "tuning"
    assert launched_as(["/venv/bin/lacnn-zoo-export"], ["python", "/venv/bin/lacnn-zoo-export"]) == "export"
    for orig in (["python", "-m", "pytest"], ["python", "-m", "export.bench"], ["python", "-c", "import lacnn_zoo"],
                 ["python", "script.py", "-m", "lacnn_zoo"], ["python"]):
        assert launched_as([orig[-1]], orig) is None, orig


def test_training_on_a_folder_raises_no_shuffle_warning_and_reshuffles_every_epoch(tmp_path):
    from test_image_folder import digits_uint8, write_digits_folder

    from lacnn_zoo.data import load_dataset
    from lacnn_zoo.training import train

    images, labels = digits_uint8()
    folder = str(tmp_path / "digits")
    write_digits_folder(folder, images[:300], labels[:300])
    data = load_dataset(folder, seed=0, batch_size=300)
    orders = [np.concatenate([y.numpy() for _, y in data.train]) for _ in range(2)]
    assert sorted(orders[0]) == sorted(orders[1]) and not np.array_equal(orders[0], orders[1])

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train("plain_cnn_tiny", dataset=folder, epochs=1, batch_size=64, verbose=0, output_dir=str(tmp_path / "run"))
    assert not [w for w in caught if "shuffle" in str(w.message)], [str(w.message) for w in caught]
