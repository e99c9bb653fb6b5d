"""Deployment: LiteRT parity, int8 artifacts judged by accuracy against labels, the accuracy gate, metadata read
back from the artifact files, export.validate, the deploy snippets of docs/deployment.md and the per-process benchmark.

One trained run and one full export (all formats + int8) are shared by the module: tiny model, 8x8 digits.
"""

import json
import os
import re
import subprocess
import sys

import numpy as np
import onnx
import pytest

from export import export_model
from lacnn_zoo import build_model

DEPLOYMENT = os.path.join(os.path.dirname(__file__), os.pardir, "docs", "deployment.md")
ARTIFACTS = ("model.onnx", "model_int8.onnx", "model.tflite", "model_int8.tflite")


ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), os.pardir))

@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from lacnn_zoo.training import train

    folder = tmp_path_factory.mktemp("deploy") / "run"
    train("plain_cnn_tiny", epochs=2, output_dir=str(folder), verbose=0, tensorboard=False)
    return folder


@pytest.fixture(scope="module")
def exported(run):
    out = run.parent / "exported" / "digits"
    manifest = export_model(run / "best.keras", out, format="all", quantize="int8", calibration_images=32)
    return out, manifest


@pytest.fixture(scope="module")
def digits_test():
    from lacnn_zoo.data import load_digits

    return load_digits(seed=0).test


def _top1(outputs, labels):
    return float(np.mean(np.asarray(outputs).argmax(axis=-1) == labels))


def test_all_formats_written_and_litert_parity(exported, digits_test):
    import keras
    from ai_edge_litert.interpreter import Interpreter

    out, manifest = exported
    assert sorted(os.listdir(out)) == sorted(["manifest.json", "saved_model", *ARTIFACTS])
    assert set(manifest["parity"]["max_abs_diff"]) == {"onnx", "saved_model", "litert"}  # int8: accuracy, not parity
    assert set(manifest["parity"]["max_abs_diff"]["litert"]) == {"1", "7", "32"}
    # Independently of the exporter: the .tflite on the plain LiteRT interpreter against Keras, fresh inputs.
    model = keras.saving.load_model(manifest["source"])
    x = digits_test[0][:5]
    expected = np.asarray(model(x, training=False))
    interpreter = Interpreter(model_path=str(out / "model.tflite"))
    runner = interpreter.get_signature_runner("serving_default")
    got = runner(images=x)[manifest["formats"]["litert"]["output_key"]]
    assert np.all(np.abs(got - expected) <= 1e-5 + 1e-4 * np.abs(expected).max(axis=1, keepdims=True))


def test_int8_accuracy_in_manifest_is_measured_against_the_test_labels(exported, digits_test):
    import keras

    from export.runtimes import Runner

    out, manifest = exported
    x, y = digits_test
    keras_top1 = _top1(keras.saving.load_model(manifest["source"]).predict_on_batch(x), y)
    q = manifest["quantization"]
    assert q["calibration"]["dataset"] == "digits" and q["calibration"]["calibration_images"] == 32
    assert q["calibration"]["num_examples"] == len(y) == 360 and q["max_accuracy_drop"] == 1.0
    for key, name in (("onnx_int8", "model_int8.onnx"), ("litert_int8", "model_int8.tflite")):
        figures = q["artifacts"][key]
        assert figures["path"] == name
        assert figures["keras_top1"] == pytest.approx(keras_top1)
        assert figures["top1"] == pytest.approx(_top1(Runner(out / name)(x), y))
        assert figures["drop_points"] == pytest.approx(100 * (keras_top1 - figures["top1"]))
        assert figures["drop_points"] <= 1.0


def test_int8_artifacts_are_statically_quantised(exported):
    from ai_edge_litert.interpreter import Interpreter

    out, _ = exported
    graph = onnx.load(str(out / "model_int8.onnx")).graph
    ops = {n.op_type for n in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops and "DynamicQuantizeLinear" not in ops  # static QDQ
    weights = {i.name: i for i in graph.initializer}
    conv_weights = [n.input[1] for n in graph.node if n.op_type == "Conv"]
    producers = {o: n for n in graph.node for o in n.output}
    for name in conv_weights:  # each conv weight is int8, dequantised with one scale per output channel
        dq = producers[name]
        assert dq.op_type == "DequantizeLinear"
        assert weights[dq.input[0]].data_type == onnx.TensorProto.INT8
        assert len(onnx.numpy_helper.to_array(weights[dq.input[1]])) > 1
    details = Interpreter(model_path=str(out / "model_int8.tflite")).get_tensor_details()
    assert sum(d["dtype"] == np.int8 for d in details) > len(details) // 2


def test_metadata_travels_inside_every_artifact(exported):
    from tensorflow.lite.tools import flatbuffer_utils

    out, manifest = exported
    assert manifest["preprocessing"]["scale"] == 1 / 16
    for name in ("model.onnx", "model_int8.onnx"):
        props = [(p.key, p.value) for p in onnx.load(str(out / name)).metadata_props]
        assert [json.loads(v) for k, v in props if k == "preprocessing"] == [manifest["preprocessing"]]
    for name in ("model.tflite", "model_int8.tflite"):  # read with TensorFlow's own flatbuffer reader
        model = flatbuffer_utils.read_model(str(out / name))
        entries = {m.name.decode(): bytes(model.buffers[m.buffer].data) for m in model.metadata}
        assert json.loads(entries["lacnn_zoo.preprocessing"].decode()) == manifest["preprocessing"]
        assert "min_runtime_version" in entries  # the converter's own entries are kept


def test_class_names_in_the_artifacts_of_an_in_memory_model(tmp_path):
    from export.runtimes import read_metadata

    model = build_model("plain_cnn_tiny", input_shape=(8, 8, 1), num_classes=3)
    pre = {"scale": 0.5, "mean": [0.1], "std": [2.0], "resize": None, "class_names": ["cat", "dog", "émeu"]}
    x = np.random.default_rng(0).normal(size=(8, 8, 8, 1)).astype("float32")
    manifest = export_model(model, tmp_path / "out", format="litert", preprocessing=pre, quantize="int8",
                            quantization_data=(x, None, None), max_accuracy_drop=None, batch_sizes=(1, 3))
    assert manifest["class_names"] == pre["class_names"]
    for name in ("model.tflite", "model_int8.tflite"):
        assert read_metadata(tmp_path / "out" / name) == {"class_names": pre["class_names"], "preprocessing": pre}
    assert sorted(os.listdir(tmp_path / "out")) == ["manifest.json", "model.tflite", "model_int8.tflite"]


def test_accuracy_gate_refuses_and_writes_nothing(run, monkeypatch, capsys):
    import export.core
    from export.__main__ import main

    real = export.core.load_quantization_data

    def ruined_calibration(*args, **kwargs):  # ranges 1000x too narrow: int8 activations saturate
        calibration, test_x, test_y, description = real(*args, **kwargs)
        return calibration * 1e-3, test_x, test_y, description

    monkeypatch.setattr(export.core, "load_quantization_data", ruined_calibration)
    out = run.parent / "refused"
    code = main([str(run / "best.keras"), "--out", str(out), "--format", "onnx", "--quantize", "int8",
                 "--calibration-images", "16"])
    err = capsys.readouterr().err
    assert code == 2
    assert re.fullmatch(r"export: error: model_int8\.onnx: top-1 .* exceeds --max-accuracy-drop=1\.0\. "
                        r"Nothing was written\.\n", err), err
    assert not out.exists() and not [p for p in os.listdir(run.parent) if "refused" in p and p != ".refused.lock"]


def test_quantize_bad_inputs(run, tmp_path, capsys):
    from export.__main__ import main

    model = build_model("plain_cnn_tiny", input_shape=(8, 8, 1))
    with pytest.raises(ValueError, match="quantize"):
        export_model(model, tmp_path / "a", quantize="int4")
    with pytest.raises(ValueError, match="onnx and litert"):
        export_model(model, tmp_path / "b", format="saved_model", quantize="int8")
    with pytest.raises(ValueError, match="`dataset` is needed"):
        export_model(model, tmp_path / "c", format="onnx", quantize="int8")
    for option, value in (("--calibration-images", "0"), ("--max-accuracy-drop", "-1")):
        with pytest.raises(SystemExit) as exit_info:  # refused by the parser, naming the flag
            main([str(run / "best.keras"), "--out", str(tmp_path / "d"), "--format", "onnx", "--quantize", "int8",
                  option, value])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and err.count("\n") == 1 and f"argument {option}: takes" in err, err
    assert os.listdir(tmp_path) == []


def test_validate_prints_artifact_and_keras_top1(exported, capsys, tmp_path):
    from export.validate import main

    out, manifest = exported
    figures = manifest["quantization"]["artifacts"]["litert_int8"]
    assert main([str(out / "model_int8.tflite"), "--out", str(tmp_path / "v.json")]) == 0
    printed = capsys.readouterr().out
    assert f"top-1 {100 * figures['top1']:.2f}% on the test split of digits (360 images" in printed
    assert f"top-1 {100 * figures['keras_top1']:.2f}%; drop" in printed
    assert json.load(open(tmp_path / "v.json"))["top1"] == pytest.approx(figures["top1"])
    assert main([str(out / "manifest.json")]) == 2
    assert "must be an .onnx or .tflite file" in capsys.readouterr().err
    # On the command line nothing but the figures: LiteRT's XNNPACK line is filtered with TensorFlow's.
    env = {**{k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}, "PYTHONPATH": ROOT}
    done = subprocess.run([sys.executable, "-m", "export.validate", str(out / "model_int8.tflite")], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0 and done.stderr == "" and "top-1" in done.stdout, done.stderr


@pytest.mark.parametrize("marker,artifact", [
    ("deploy-snippet", "model.onnx"), ("deploy-snippet", "model_int8.onnx"),
    ("deploy-snippet-litert", "model.tflite"), ("deploy-snippet-litert", "model_int8.tflite"),
])
def test_deploy_snippets_run_without_tensorflow(exported, digits_test, marker, artifact):
    """Each snippet as written (the int8 variants with the file name its comment offers), on raw digits."""
    out, _ = exported
    text = open(DEPLOYMENT).read()
    snippet = re.search(rf"<!-- {marker} -->\s*```python\n(.*?)```", text, re.S).group(1)
    default = re.search(r'path = "(exported/deploy(?:-all)?/model\.\w+)"', snippet).group(1)
    snippet = snippet.replace(default, f"exported/digits/{artifact}")
    import tensorflow as tf

    images = np.random.default_rng(0).uniform(0, 16, size=(2, 9, 7, 1)).astype("float32")
    resized = tf.image.resize(images, (8, 8)).numpy()  # what training does with --image-size
    code = snippet + (
        "\nimport sys\nassert not {'tensorflow', 'keras', 'psutil', 'PIL'} & set(sys.modules)\n"
        f"images = np.random.default_rng(0).uniform(0, 16, size=(2, 9, 7, 1)).astype('float32')\n"
        f"assert np.abs(resize(images, (8, 8)) - np.array({resized.tolist()})).max() < 1e-4\n"
        "from sklearn.datasets import load_digits\nraw, labels = load_digits(return_X_y=True)\n"
        "print(sum(int(p) == t for p, t in zip(predict(raw.reshape(-1, 8, 8, 1)), labels)) / len(labels))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=out.parent.parent, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    first, accuracy = result.stdout.splitlines()
    assert re.fullmatch(r"\[\d\]", first)
    assert float(accuracy) > 0.5  # raw pixels + the preprocessing read from the artifact: right predictions


def test_bench_times_every_runtime_in_its_own_process(tmp_path):
    from export import bench

    bench.prepare("plain_cnn_tiny", str(tmp_path), (8, 8, 1), calibration_images=8)
    runtimes = ("keras", "onnxruntime", "onnxruntime_int8", "litert_int8")
    results = bench.measure(str(tmp_path), (8, 8, 1), runtimes, batch_sizes=(1, 3), rounds=2, calls=2, warmup=1)
    pids = {r["pid"] for r in results.values()}
    assert len(pids) == len(runtimes) and os.getpid() not in pids
    assert results["keras"]["tensorflow_loaded"] and not any(
        results[r]["tensorflow_loaded"] for r in runtimes if r != "keras")
    assert all(len(results[r]["times"][b]) == 4 for r in runtimes for b in (1, 3))
    rows = bench.summarise("plain_cnn_tiny", results, (1, 3))
    assert {r["x_keras"] for r in rows if r["runtime"] == "keras"} == {1.0}
    with pytest.raises(SystemExit) as exit_info:  # < 20 timed calls per point: a usage error
        bench.main(["plain_cnn_tiny", "--rounds", "2", "--calls", "5"])
    assert exit_info.value.code == 2


@pytest.mark.parametrize("damage,needle", [
    ({"mean": [0.5, 0.5, 0.5]}, "mean="), ({"scale": -1}, "scale="), ({"resize": [32, 32]}, "resize="),
    ({"channel_order": "GRB"}, "channel_order="), (None, "not JSON"),
])
def test_validate_judges_the_preprocessing_the_artifact_carries(exported, tmp_path, capsys, damage, needle):
    """A deployment reads the artifact's own metadata: validate refuses it damaged, whatever the manifest says."""
    import shutil

    import onnx

    from export.validate import main

    out, _ = exported
    shutil.copy(out / "manifest.json", tmp_path / "manifest.json")
    model = onnx.load(str(out / "model.onnx"))
    props = {p.key: p.value for p in model.metadata_props}
    props["preprocessing"] = "{not json" if damage is None else json.dumps(
        {**json.loads(props["preprocessing"]), **damage})
    onnx.helper.set_model_props(model, props)
    onnx.save(model, str(tmp_path / "model.onnx"))
    assert main([str(tmp_path / "model.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err and "damaged" in err, err


def _stale_manifest_beside(exported, folder, artifacts):
    """`artifacts` copied into `folder` beside a manifest whose preprocessing is off by 5 standard deviations."""
    import shutil

    out, manifest = exported
    os.makedirs(folder, exist_ok=True)
    for name in artifacts:
        shutil.copy(out / name, folder / name)
    pre = manifest["preprocessing"]
    stale = {**pre, "mean": [m + 5 * s for m, s in zip(pre["mean"], pre["std"])]}
    (folder / "manifest.json").write_text(json.dumps({**manifest, "preprocessing": stale}))


def test_validate_feeds_the_artifact_its_own_preprocessing_whatever_the_manifest_says(exported, digits_test,
                                                                                      tmp_path):
    """The inputs are preprocessed as the artifact records: its top-1 is the Keras model's on the run's own test
    inputs (float ONNX: within one image), though the manifest beside it is stale."""
    import keras

    from export.validate import validate

    _stale_manifest_beside(exported, tmp_path, ["model.onnx"])
    model = keras.saving.load_model(exported[1]["source"])
    expected = _top1(model.predict(digits_test[0], verbose=0), digits_test[1])
    result = validate(tmp_path / "model.onnx")
    assert result["keras_top1"] == pytest.approx(expected, abs=1e-9)
    assert abs(result["top1"] - expected) <= 1 / len(digits_test[1]) and expected > 0.5


@pytest.mark.parametrize("marker,artifact", [("deploy-snippet", "model.onnx"),
                                             ("deploy-snippet-litert", "model.tflite")])
def test_deploy_snippets_read_the_artifact_not_a_manifest_beside_it(exported, tmp_path, marker, artifact):
    """Each snippet, beside a stale manifest, predicts the raw digits as the Keras model does on the run's
    recorded preprocessing (worked out here from metrics.json)."""
    import keras
    from sklearn.datasets import load_digits

    _stale_manifest_beside(exported, tmp_path / "exported" / "digits", [artifact])
    snippet = re.search(rf"<!-- {marker} -->\s*```python\n(.*?)```", open(DEPLOYMENT).read(), re.S).group(1)
    snippet = re.sub(r'path = "exported/deploy(?:-all)?/model\.\w+"', f'path = "exported/digits/{artifact}"', snippet)
    code = snippet + ("\nfrom sklearn.datasets import load_digits\nraw, labels = load_digits(return_X_y=True)\n"
                      "print([int(p) for p in predict(raw.reshape(-1, 8, 8, 1))])\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    predicted = np.array(json.loads(result.stdout.splitlines()[-1]))
    source = exported[1]["source"]
    pre = json.load(open(os.path.join(os.path.dirname(source), "metrics.json")))["preprocessing"]
    raw, labels = load_digits(return_X_y=True)
    x = ((raw.reshape(-1, 8, 8, 1) * pre["scale"] - pre["mean"][0]) / pre["std"][0]).astype("float32")
    keras_predicted = keras.saving.load_model(source).predict(x, verbose=0).argmax(axis=-1)
    assert np.mean(predicted != keras_predicted) <= 2 / len(labels) and np.mean(predicted == labels) > 0.5


def test_bench_reports_medians_of_the_timed_calls(monkeypatch):
    """export.bench's figures are medians (as printed): of every timed call, and of each round's calls for the
    ratio's range; worked out here by hand from canned worker answers where one slow call would move a mean."""
    from export import bench

    answers = {"keras": [0.010, 0.010, 0.090], "onnxruntime": [0.005, 0.006, 0.010]}  # seconds per call

    class Worker:
        def __init__(self, runtime, path, threads=None, profile_prefix=None):
            self.runtime, self.hello = runtime, {"pid": hash(runtime), "tensorflow_loaded": runtime == "keras"}
            self.process = type("Process", (), {"kill": lambda self: None, "wait": lambda self: None})()

        def ask(self, shape, calls, warmup):
            return {"pid": self.hello["pid"], "times": list(answers[self.runtime]) if calls else []}

        def close(self):
            return None

    monkeypatch.setattr(bench, "Worker", Worker)
    results = bench.measure("unused", (8, 8, 1), ("keras", "onnxruntime"), batch_sizes=(2,), rounds=2, calls=3,
                            warmup=1)
    keras_row, onnx_row = bench.summarise("m", results, (2,))
    assert results["onnxruntime"]["rounds"][2] == [0.006, 0.006]  # each round's median call
    assert onnx_row["median_ms"] == pytest.approx(6.0) and keras_row["median_ms"] == pytest.approx(10.0)
    assert onnx_row["x_keras"] == pytest.approx(10 / 6) and onnx_row["x_keras_rounds"] == pytest.approx([10 / 6] * 2)
    assert onnx_row["images_per_s"] == pytest.approx(2 / 0.006)
    # Its 6 calls sorted, in ms: 5 5 6 6 10 10; 25th and 75th percentiles (linear) 5.25 and 9, over the median 6.
    assert onnx_row["spread_pct"] == pytest.approx(100 * (9.0 - 5.25) / 6.0)


def test_int8_calibration_images_come_from_the_training_split_only(digits):
    from export.quantize import load_quantization_data

    calibration, test_x, test_y, description = load_quantization_data(
        "digits", seed=0, calibration_images=64, preprocessing=digits.preprocessing)
    train_rows = {x.tobytes() for x in digits.train[0]}
    test_rows = {x.tobytes() for x in digits.test[0]} - train_rows
    assert len(calibration) == 64 and all(x.tobytes() in train_rows for x in calibration)
    assert not any(x.tobytes() in test_rows for x in calibration)
    np.testing.assert_array_equal(test_x, digits.test[0])  # the test split, whole, for the accuracy
    assert description["calibration_split"] == "train" and len(test_y) == len(digits.test[1])


def test_int8_data_must_have_the_models_channels():
    from export.quantize import load_quantization_data

    with pytest.raises(ValueError, match=r"inputs of shape \(8, 8, 3\), but 'digits' gives \(8, 8, 1\)"):
        load_quantization_data("digits", calibration_images=8, input_shape=(8, 8, 3))
    assert len(load_quantization_data("digits", calibration_images=8, input_shape=(None, None, 1))[0]) == 8


def test_int8_data_is_standardised_as_the_model_was_trained(digits):
    """A model trained with another mean and std (another data set at the same scale) gets the pixels
    standardised by its own: (pixels - its mean) / its std, the pixels being x * std + mean of the data set's."""
    from export.quantize import load_quantization_data

    own = digits.preprocessing
    recorded = dict(own, mean=[0.2], std=[0.5])
    calibration, test_x, test_y, _ = load_quantization_data("digits", seed=0, calibration_images=16,
                                                            preprocessing=recorded)

    def by_hand(x):
        return (x * own["std"][0] + own["mean"][0] - 0.2) / 0.5

    np.testing.assert_allclose(test_x, by_hand(digits.test[0]), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(test_y, digits.test[1])
    np.testing.assert_allclose(calibration, by_hand(digits.train[0][:16]), rtol=1e-5, atol=1e-5)  # the first 16
