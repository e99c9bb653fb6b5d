"""The mechanism search: space, end-to-end run, resume, distributed chief + workers, JAX backend, bad input."""

import json
import os
import socket
import subprocess
import sys

import keras
import keras_tuner
import pytest

from lacnn_zoo.layers.layer_attention import MECHANISMS as LAYER_ATTENTION_MECHANISMS
from lacnn_zoo.layers.residual import MIXING_MODES
from tuning import CANDIDATES, MechanismHyperModel, run_search

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_space_covers_every_mechanism_of_the_zoo():
    expected = {"plain", "attention_augmented", *(f"resnet_{m}" for m in MIXING_MODES), *LAYER_ATTENTION_MECHANISMS}
    assert set(CANDIDATES) == expected


def _conditional_values(hp, mechanism):
    """The searched values of every knob that is active for `mechanism`."""
    knobs = {}
    for spec in hp.space:
        if spec.name in ("mechanism", "learning_rate"):
            continue
        conditions = spec.conditions
        if conditions and not all(mechanism in c.values for c in conditions):
            continue
        values = getattr(spec, "values", None)
        if values is None:  # Int / Float / Boolean
            values = [spec.min_value, spec.max_value] if hasattr(spec, "min_value") else [True, False]
        knobs[spec.name] = list(values)
    return knobs


def test_every_branch_of_the_space_builds():
    """Every value of every knob of every mechanism builds (each knob varied in turn, the others at defaults)."""
    hypermodel = MechanismHyperModel((8, 8, 1), 10)
    hp = keras_tuner.HyperParameters()
    hypermodel.build(hp)  # registers the whole space, conditional branches included
    built = 0
    for mechanism in CANDIDATES:
        knobs = _conditional_values(hp, mechanism)
        assert "width" in knobs and "depth" in knobs
        variants = [{}] + [{name: value} for name, values in knobs.items() for value in values[1:]]
        for variant in variants:
            trial = hp.copy()
            trial.values["mechanism"] = mechanism
            trial.values.update({name: values[0] for name, values in knobs.items()})
            trial.values.update(variant)
            keras.backend.clear_session()
            model = hypermodel.build(trial)
            assert model.output.shape == (None, 10)
            built += 1
    assert built > 30


def test_the_layer_attended_candidates_are_the_layer_attention_mechanisms():
    from tuning.hypermodel import attention_mechanism

    found = {m: attention_mechanism(m) for m in CANDIDATES}
    assert {m: layer for m, layer in found.items() if layer is not None} == LAYER_ATTENTION_MECHANISMS


def test_a_knob_added_to_a_mechanism_is_searched_and_built(monkeypatch):
    """Only the mechanism class changes (test_layer_attended.grow_a_knob): its searched values join the space,
    under that mechanism alone, and a trial's value reaches the built layer."""
    from test_layer_attended import GatedInnateStatic, grow_a_knob

    grow_a_knob(monkeypatch)
    hypermodel = MechanismHyperModel((8, 8, 1), 10, mechanisms=["plain", "innate_static", "self_attention"])
    hp = keras_tuner.HyperParameters()
    hypermodel.build(hp)
    (spec,) = [s for s in hp.space if s.name == "gate_units"]
    assert list(spec.values) == [3, 5] and [c.values for c in spec.conditions] == [["innate_static"]]
    assert _conditional_values(hp, "innate_static")["gate_units"] == [3, 5]
    assert "gate_units" not in _conditional_values(hp, "self_attention")
    trial = hp.copy()
    trial.values.update({name: values[0] for name, values in _conditional_values(hp, "innate_static").items()})
    trial.values.update(mechanism="innate_static", gate_units=5)
    attention = hypermodel.build(trial).get_layer("layer_attention")
    assert isinstance(attention, GatedInnateStatic) and attention.gate_units == 5


def test_restricted_space_and_inactive_knobs():
    hypermodel = MechanismHyperModel((8, 8, 1), 10, mechanisms=["plain", "dynamic_recurrent"])
    hp = keras_tuner.HyperParameters()
    hypermodel.build(hp)
    names = {spec.name for spec in hp.space}
    assert {"lstm_units", "lstm_direction", "tap_form"} <= names
    assert not {"heads", "beta_init", "aa_heads", "blocks_per_stage", "tap_transform"} & names


class _CountFits(keras.callbacks.Callback):
    fits = 0

    def on_train_begin(self, logs=None):
        type(self).fits += 1


class _CrashInSecondTrial(keras.callbacks.Callback):
    fits = 0

    def on_train_begin(self, logs=None):
        type(self).fits += 1
        if type(self).fits == 2:
            raise KeyboardInterrupt("simulated interruption")


def test_tiny_search_end_to_end(tmp_path):
    result = run_search(["plain", "static_vector"], max_trials=2, epochs=1, directory=str(tmp_path), seed=1)
    project = tmp_path / "mechanisms"
    for name in ("mechanisms.csv", "mechanisms.json", "mechanisms.png", "best.keras", "oracle.json"):
        assert (project / name).exists(), name
    summary = json.load(open(project / "mechanisms.json"))
    assert sum(r["trials"] for r in summary["mechanisms"]) == 2 == len(summary["trials"])
    header = (project / "mechanisms.csv").read_text().splitlines()[0].split(",")
    assert header[0] == "mechanism"
    assert {"best_val_accuracy", "params_of_best", "time_per_epoch_s", "trials"} <= set(header)
    best = keras.saving.load_model(project / "best.keras")
    assert best.count_params() == result.best_model.count_params()
    assert 0.0 <= result.test_accuracy <= 1.0
    # Deployment reads the preprocessing beside best.keras, as for a training run.
    from lacnn_zoo.data import load_digits

    metrics = json.load(open(project / "metrics.json"))
    assert metrics["preprocessing"] == json.loads(json.dumps(load_digits(seed=1).preprocessing))
    _check_report_and_hparams(project)
    # The same project with another space is refused before any trial; foreign files are never replaced.
    trials = sorted(p.name for p in project.iterdir())
    with pytest.raises(ValueError, match=r"another search space.*mechanisms"):
        run_search(["plain", "self_attention"], max_trials=2, epochs=1, directory=str(tmp_path), seed=1)
    assert sorted(p.name for p in project.iterdir()) == trials
    (project / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="notes.txt"):
        run_search(["plain"], max_trials=1, epochs=1, directory=str(tmp_path), seed=1, overwrite=True)
    assert (project / "notes.txt").read_text() == "mine" and (project / "oracle.json").exists()


@pytest.mark.long
def test_resume_does_not_rerun_finished_trials(tmp_path):
    kwargs = dict(mechanisms=["plain", "resnet_add"], max_trials=3, epochs=1, directory=str(tmp_path), seed=3)
    with pytest.raises(KeyboardInterrupt):
        run_search(callbacks=[_CrashInSecondTrial()], **kwargs)
    oracle = json.load(open(tmp_path / "mechanisms" / "oracle.json"))
    finished_before = {t for t in os.listdir(tmp_path / "mechanisms") if t.startswith("trial_")}
    assert len(finished_before) >= 1
    _CountFits.fits = 0
    result = run_search(callbacks=[_CountFits()], **kwargs)
    assert sum(r["trials"] for r in result.table) == 3
    # Three trials in all; the one finished before the interruption was not trained again.
    assert _CountFits.fits == 2, (_CountFits.fits, oracle)
    # The finished search resumed: no trial runs, and its best, its files and its wall time stand.
    project = tmp_path / "mechanisms"
    written = {name: (project / name).read_bytes() for name in ("mechanisms.json", "metrics.json", "best.keras",
                                                                 "mechanisms.csv")}
    again = run_search(callbacks=[_CountFits()], **kwargs)
    assert _CountFits.fits == 2
    assert {name: (project / name).read_bytes() for name in written} == written
    assert again.wall_time_s == result.wall_time_s > 0
    assert again.best_hyperparameters == result.best_hyperparameters
    assert again.test_accuracy == result.test_accuracy and again.table == result.table


def test_bad_input_fails_before_any_trial(tmp_path):
    cases = [
        (dict(mechanisms=["plain", "transformer"]), "Unknown mechanism"),
        (dict(mechanisms=[]), "empty"),
        (dict(max_trials=0), "max_trials"),
        (dict(objective="val_auc"), "objective"),
        (dict(tuner="grid"), "tuner"),
    ]
    for kwargs, match in cases:
        with pytest.raises(ValueError, match=match):
            run_search(directory=str(tmp_path / "never"), **kwargs)
    assert not (tmp_path / "never").exists()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.long
def test_distributed_chief_and_two_workers(tmp_path):
    port = str(_free_port())
    command = [sys.executable, "-m", "tuning", "--mechanisms", "plain,resnet_add", "--trials", "4", "--epochs", "1",
               "--directory", str(tmp_path), "--verbose", "0"]
    base_env = {**os.environ, "KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": port,
                "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": ROOT}
    procs = []
    try:
        for tuner_id in ("chief", "tuner0", "tuner1"):
            env = {**base_env, "KERASTUNER_TUNER_ID": tuner_id}
            procs.append(subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE,
                                          stderr=subprocess.STDOUT, text=True))
        outputs = [p.communicate(timeout=420)[0] for p in procs]
    finally:
        for p in procs:  # bounded: nothing outlives the test
            if p.poll() is None:
                p.kill()
                p.wait()
    assert [p.returncode for p in procs] == [0, 0, 0], outputs[0][-3000:]
    summary = json.load(open(tmp_path / "mechanisms" / "mechanisms.json"))
    assert len(summary["trials"]) == 4
    # The chief's oracle draws the workers' trials too: each mechanism had a trial before either had a second.
    first_two = sorted(summary["trials"], key=lambda t: int(t["trial"]))[:2]
    assert {t["mechanism"] for t in first_two} == {"plain", "resnet_add"}, summary["trials"]
    assert "test accuracy of the best model" in outputs[0]
    trial_dirs = [d for d in os.listdir(tmp_path / "mechanisms") if d.startswith("trial_")]
    assert len(trial_dirs) == 4


def test_jax_backend_builds_and_runs_one_trial(tmp_path):
    pytest.importorskip("jax")
    code = (
        "import keras; assert keras.backend.backend() == 'jax'\n"
        "from tuning import run_search\n"
        f"r = run_search(['static_vector'], max_trials=1, epochs=1, directory={str(tmp_path)!r})\n"
        "print('JAX-OK', r.table[0]['mechanism'], r.table[0]['trials'])\n"
    )
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "JAX-OK static_vector 1" in out.stdout


def test_overrides_put_the_searched_heads_on_a_given_backbone():
    from lacnn_zoo import tap_names

    hypermodel = MechanismHyperModel((8, 8, 1), 10, ["static_vector", "plain"],
                                     overrides={"backbone": "plain_cnn_tiny"})
    hp = keras_tuner.HyperParameters()
    hp.Fixed("mechanism", "static_vector")
    hp.Fixed("width", 32)  # the searched width would give 32/64/128 channels; the given backbone has 16/32/64
    model = hypermodel.build(hp)
    channels = [model.get_layer(name).output.shape[-1] for name in tap_names(model)]
    assert channels == [16, 16, 32, 32, 64, 64]
    with pytest.raises(ValueError, match=r"backbone.*apply to none"):
        MechanismHyperModel((8, 8, 1), 10, ["plain"], overrides={"backbone": "plain_cnn_tiny"})


def test_search_on_an_image_folder_with_size_and_augmentation(tmp_path, capsys):
    from test_image_folder import few_per_class, write_digits_folder

    from tuning.__main__ import main as tune

    images, labels = few_per_class(6)
    write_digits_folder(tmp_path / "digits", images, labels, size=16)
    result = run_search(["plain"], dataset=str(tmp_path / "digits"), max_trials=1, epochs=1,
                        directory=str(tmp_path), seed=0, image_size=(12, 12), augment="crop-flip")
    assert tuple(result.best_model.input_shape[1:]) == (12, 12, 1)
    space = json.load(open(tmp_path / "mechanisms" / "search.json"))
    assert space["image_size"] == [12, 12] and space["augment"] == "crop-flip"
    # A project recorded before these keys existed resumes with their defaults; another augmentation is refused.
    for key in ("image_size", "augment"):
        del space[key]
    space["dataset"] = "digits"
    os.makedirs(tmp_path / "old")
    (tmp_path / "old" / "search.json").write_text(json.dumps(space))
    from lacnn_zoo.io import mark_owned
    from tuning.search import _prepare_project

    mark_owned(str(tmp_path / "old"), "search")

    _prepare_project(str(tmp_path / "old"), {**space, "image_size": None, "augment": "none"}, overwrite=False)
    with pytest.raises(ValueError, match="augment: stored 'none', asked 'crop-flip'"):
        _prepare_project(str(tmp_path / "old"), {**space, "image_size": None, "augment": "crop-flip"},
                         overwrite=False)
    assert tune(["--augment", "crop-flip", "--directory", str(tmp_path / "never")]) == 2
    assert "--augment applies to TFDS data sets and image folders" in capsys.readouterr().err
    assert not (tmp_path / "never").exists()


@pytest.mark.long
def test_executions_per_trial_repeats_each_trial_and_the_table_gives_mean_and_std(tmp_path, capsys):
    import numpy as np

    from lacnn_zoo.io import read_json
    from tuning.search import _prepare_project, print_table

    result = run_search(["plain", "static_vector"], max_trials=2, epochs=1, directory=str(tmp_path), seed=4,
                        executions_per_trial=2)
    project = tmp_path / "mechanisms"
    assert json.load(open(project / "search.json"))["executions_per_trial"] == 2
    oracle_trials = {}
    for trial_dir in sorted(p for p in project.iterdir() if p.name.startswith("trial_")):
        executions = read_json(trial_dir / "executions.json")
        assert len(executions) == 2
        trial = json.load(open(trial_dir / "trial.json"))
        # Keras Tuner's score of the trial is the mean of its executions' best values.
        assert trial["score"] == pytest.approx(np.mean([e["val_accuracy"] for e in executions]), rel=1e-6)
        oracle_trials[trial["trial_id"]] = (trial["hyperparameters"]["values"]["mechanism"], executions)
    for row in result.table:
        values = [e["val_accuracy"] for mechanism, ex in oracle_trials.values() if mechanism == row["mechanism"]
                  for e in ex]
        assert row["executions"] == len(values) == 2 * row["trials"]
        if not values:  # not drawn by this seed: in the table with 0 trials
            continue
        assert row["val_accuracy_mean"] == pytest.approx(np.mean(values))
        assert row["val_accuracy_std"] == pytest.approx(np.std(values, ddof=1))
        best = [e["val_accuracy"] for e in oracle_trials[row["best_trial"]][1]]
        assert row["best_trial_val_accuracy_std"] == pytest.approx(np.std(best, ddof=1))
    print_table(result)
    assert "±" in capsys.readouterr().out
    # A project recorded before the option existed was searched with one execution per trial.
    space = json.load(open(project / "search.json"))
    del space["executions_per_trial"]
    (project / "search.json").write_text(json.dumps(space))
    _prepare_project(str(project), {**space, "executions_per_trial": 1}, overwrite=False)
    with pytest.raises(ValueError, match="executions_per_trial: stored 1, asked 3"):
        _prepare_project(str(project), {**space, "executions_per_trial": 3}, overwrite=False)
    with pytest.raises(ValueError, match="executions_per_trial"):
        run_search(["plain"], directory=str(tmp_path / "never"), executions_per_trial=0)
    assert not (tmp_path / "never").exists()


@pytest.mark.long
def test_every_asked_mechanism_gets_a_trial_and_an_epoch_time_excludes_tracing(tmp_path, capsys):
    import numpy as np

    from lacnn_zoo.io import read_json

    mechanisms = ["plain", "static_vector", "self_attention"]
    result = run_search(mechanisms, max_trials=3, epochs=2, directory=str(tmp_path), seed=0)
    assert sorted(r["mechanism"] for r in result.table) == sorted(mechanisms)
    drawn = [r["mechanism"] for r in json.load(open(tmp_path / "mechanisms" / "mechanisms.json"))["trials"]]
    assert sorted(drawn) == sorted(mechanisms)  # each once: none skipped, none twice
    assert all(r["trials"] == 1 and r["best_val_accuracy"] is not None for r in result.table)
    per_trial = {}
    for trial in json.load(open(tmp_path / "mechanisms" / "mechanisms.json"))["trials"]:
        executions = read_json(tmp_path / "mechanisms" / f"trial_{trial['trial']}" / "executions.json")
        assert len(executions[0]["epoch_times_s"]) == 2
        assert trial["time_per_epoch_s"] == pytest.approx(executions[0]["epoch_times_s"][1])  # not the first
        per_trial.setdefault(trial["mechanism"], []).append(executions[0]["epoch_times_s"][1])
    for row in result.table:
        assert row["time_per_epoch_s"] == pytest.approx(np.mean(per_trial[row["mechanism"]]))


def test_the_printed_table_says_a_mechanism_without_a_trial(capsys):
    """A project searched before every mechanism was visited first can hold one without a trial."""
    from tuning.search import SearchResult, mechanism_table, print_table

    row = {"trial": "1", "mechanism": "plain", "score": 0.5, "val_accuracy": 0.5, "params": 10,
           "time_per_epoch_s": 1.0, "executions": [{"val_accuracy": 0.5}]}
    table = mechanism_table([row], "val_accuracy", ["plain", "static_vector"])
    print_table(SearchResult(table=table, best_model=None, best_hyperparameters={}, test_accuracy=0.5,
                             project_dir="p", wall_time_s=1.0))
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("static_vector"))
    assert line.endswith("(0 trials)")


def test_the_table_keeps_every_asked_mechanism_whichever_were_drawn():
    from tuning.search import mechanism_table

    def row(trial, mechanism, score):
        return {"trial": trial, "mechanism": mechanism, "score": score, "val_accuracy": score, "params": 10,
                "time_per_epoch_s": 1.0, "executions": [{"val_accuracy": score}]}

    asked = ["plain", "static_vector", "self_attention", "dynamic_recurrent"]
    table = mechanism_table([row("1", "self_attention", 0.8), row("2", "self_attention", 0.9)], "val_accuracy",
                            asked)
    assert [r["mechanism"] for r in table] == ["self_attention", "plain", "static_vector", "dynamic_recurrent"]
    assert [r["trials"] for r in table] == [2, 0, 0, 0] and table[0]["best_val_accuracy"] == 0.9
    assert all(r["best_val_accuracy"] is None and r["executions"] == 0 for r in table[1:])


def _check_report_and_hparams(project):
    """The project's report: the mechanisms table, the best trial's curve per mechanism (against each trial's
    own files), every trial; and Keras Tuner's hyperparameters in TensorBoard's HParams plugin data."""
    import glob

    import tensorflow as tf

    from lacnn_zoo import report

    page = report(str(project), log=lambda *a: None)
    numbers = json.load(open(os.path.join(os.path.dirname(page), "report.json")))
    trials = [json.load(open(f)) for f in sorted(glob.glob(str(project / "trial_*" / "trial.json")))]
    assert sorted(t["id"] for t in numbers["trials"]) == sorted(str(t["trial_id"]) for t in trials)
    best = {}
    for t in trials:
        mechanism = t["hyperparameters"]["values"]["mechanism"]
        if mechanism not in best or t["score"] > best[mechanism]["score"]:
            best[mechanism] = t
    assert sorted(numbers["best_curves"]) == sorted(best)
    for mechanism, t in best.items():
        executions = json.load(open(project / f"trial_{t['trial_id']}" / "executions.json"))
        assert numbers["best_curves"][mechanism] == executions[0]["history"]["val_accuracy"]
    assert [r["mechanism"] for r in numbers["mechanisms"]] == ["plain", "static_vector"]
    tags = set()
    for events in glob.glob(str(project / "tensorboard" / "**" / "events.out.tfevents.*"), recursive=True):
        for event in tf.compat.v1.train.summary_iterator(events):
            tags.update(v.tag for v in event.summary.value)
    assert "_hparams_/session_start_info" in tags, sorted(tags)[:10]


@pytest.mark.parametrize("kwargs,named", [
    (dict(max_trials=10**18), "`max_trials` must be an integer from 1 to 10000"),
    (dict(epochs=10**18), "`epochs` must be an integer from 1 to 2147483647"),
    (dict(executions_per_trial=10**18), "`executions_per_trial` must be an integer from 1 to 1000"),
    (dict(batch_size=10**18), "`batch_size` must be an integer from 1 to 2147483647"),
    (dict(seed=-1), "`seed` must be an integer from 0 to 4294967295"),
    (dict(project_name="../../escape"), "`project_name` must be a plain folder name"),
    (dict(project_name=".."), "`project_name` must be a plain folder name"),
    (dict(project_name=""), "`project_name` must be a plain folder name"),
])
def test_absurd_counts_and_paths_are_refused_before_any_work(tmp_path, kwargs, named):
    # A search that today's checks let through stays short (one trial of one epoch).
    small = dict(mechanisms=["plain"], max_trials=1, epochs=1, directory=str(tmp_path / "d" / "runs"))
    with pytest.raises(ValueError, match=named):
        run_search(**{**small, **kwargs})
    assert os.listdir(tmp_path) == []


def test_cli_refuses_a_project_name_that_leaves_the_directory(tmp_path, capsys, monkeypatch):
    from lacnn_zoo import cli

    monkeypatch.chdir(tmp_path)
    assert cli.main(["tune", "--directory", "d/runs", "--project-name", "../../escape", "--mechanisms", "plain",
                     "--trials", "1", "--epochs", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lacnn-zoo tune: error: --project-name must be a plain folder name")
    assert "--directory" in err[0] and os.listdir(tmp_path) == []


def test_a_trials_epoch_time_is_the_median_after_each_executions_first(tmp_path):
    """s/epoch is the stated median (statistics.median of the recorded times, each execution's first left out),
    not a mean: on hand-made times, and on a real trial's recorded epoch times."""
    import statistics

    from lacnn_zoo.io import read_json
    from tuning.search import time_per_epoch

    executions = [{"epoch_times_s": [9.0, 1.0, 1.0, 7.0]}, {"epoch_times_s": [8.0, 2.0]}]
    assert time_per_epoch(executions) == statistics.median([1.0, 1.0, 7.0, 2.0]) == 1.5  # the mean is 2.75
    assert time_per_epoch([{"epoch_times_s": [3.0]}]) is None  # no epoch after the first
    run_search(["plain"], max_trials=1, epochs=4, directory=str(tmp_path), seed=0)
    summary = json.load(open(tmp_path / "mechanisms" / "mechanisms.json"))
    (trial,) = summary["trials"]
    times = read_json(tmp_path / "mechanisms" / f"trial_{trial['trial']}" / "executions.json")[0]["epoch_times_s"]
    assert len(times) == 4 and trial["time_per_epoch_s"] == statistics.median(times[1:])
    assert summary["mechanisms"][0]["time_per_epoch_s"] == statistics.median(times[1:])  # its only trial


def test_a_search_on_an_application_backbone_trains_on_its_family_inputs(tmp_path, monkeypatch):
    """keras.applications' VGG16 expects BGR, ImageNet means subtracted from 0-255 pixels: every image a trial
    trains and validates on is Keras' own vgg16.preprocess_input of the raw pixels written to disk."""
    import numpy as np
    from PIL import Image

    from tuning.hypermodel import MechanismHyperModel

    rng = np.random.default_rng(0)
    raw = []
    for i in range(24):
        image = rng.integers(0, 256, size=(32, 32, 3)).astype("uint8")
        image[..., 0] = np.maximum(image[..., 0], 128 * (i % 2))  # three different channels: BGR shows
        os.makedirs(tmp_path / "folder" / str(i % 2), exist_ok=True)
        Image.fromarray(image).save(tmp_path / "folder" / str(i % 2) / f"{i:02d}.png")
        raw.append(image)
    expected = keras.applications.vgg16.preprocess_input(np.stack(raw).astype("float32"))
    seen = []
    fit = MechanismHyperModel.fit

    def recording_fit(self, hp, model, *args, **kwargs):
        for split in (kwargs["x"], kwargs["validation_data"]):
            seen.append(np.concatenate([np.asarray(x) for x, _ in split]))
        return fit(self, hp, model, *args, **kwargs)

    monkeypatch.setattr(MechanismHyperModel, "fit", recording_fit)
    run_search(["static_vector"], dataset=str(tmp_path / "folder"), max_trials=1, epochs=1, batch_size=8,
               directory=str(tmp_path / "search"), seed=0, overrides={"backbone": "VGG16", "taps": "stages"})
    assert len(seen) == 2 and sum(len(x) for x in seen) < len(raw)
    for inputs in seen:  # each input is the family's preprocessing of one of the images written
        nearest = [np.abs(expected - x).reshape(len(expected), -1).max(axis=1).min() for x in inputs]
        assert max(nearest) < 1e-4 * np.abs(expected).max()
    recorded = json.load(open(tmp_path / "search" / "mechanisms" / "metrics.json"))["preprocessing"]
    assert recorded["convention"] == "keras.applications.vgg16.preprocess_input"  # what export and deploy read


def test_a_budget_that_cannot_visit_every_mechanism_is_refused_before_any_work(tmp_path, capsys):
    from lacnn_zoo.compat import first_round_configurations
    from tuning.__main__ import main as tune
    from tuning.search import check_coverage

    with pytest.raises(ValueError, match=r"`max_trials` must be at least the number of mechanisms \(5\).*received 4"):
        check_coverage(["a", "b", "c", "d", "e"], "bayesian", 4, 1)
    check_coverage(["a", "b", "c", "d", "e"], "random", 5, 1)
    # Hyperband draws its configurations from its epochs: 2 epochs draw 2, 3 epochs 5 (factor 3).
    assert [first_round_configurations(e, 3) for e in (1, 2, 3)] == [1, 2, 5]
    with pytest.raises(ValueError, match=r"`epochs` 2 draws 2 configurations, fewer than the 5 mechanisms: pass "
                                         r"`epochs` 3 or more"):
        check_coverage(["a", "b", "c", "d", "e"], "hyperband", 1, 2)
    check_coverage(["a", "b", "c", "d", "e"], "hyperband", 1, 3)
    assert tune(["--mechanisms", "plain,resnet_add,static_vector", "--trials", "2", "--directory",
                 str(tmp_path / "never")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--trials must be at least the number of mechanisms (3)" in err[0], err
    assert not (tmp_path / "never").exists()


def test_each_trial_prints_and_keeps_its_warnings_and_one_execution_has_no_std(tmp_path, capsys, monkeypatch):
    """The end of each trial runs the training command's checks on the trial's own trained model and split sizes
    (thresholds moved so that all three fire here: the wiring is under test, the thresholds are in
    test_training.py); the table, the CSV, the JSON and the report give a one-execution std as n/a / null, and
    s/epoch is the best trial's."""
    import csv

    from lacnn_zoo import report
    from lacnn_zoo.io import read_json
    from lacnn_zoo.training import diagnostics
    from tuning.search import print_table

    measured = []
    real = diagnostics.mode_accuracies
    monkeypatch.setattr(diagnostics, "mode_accuracies", lambda *a, **k: measured.append(a) or real(*a, **k))
    monkeypatch.setattr(diagnostics, "CHANCE_SHARE", (100.0, 1.0))  # every accuracy below 1 is "at chance"
    monkeypatch.setattr(diagnostics, "OVERFIT_GAP", -1.0)
    monkeypatch.setattr(diagnostics, "MODE_GAP", -1.0)
    result = run_search(["plain"], max_trials=1, epochs=2, directory=str(tmp_path), seed=0)
    err = capsys.readouterr().err
    project = tmp_path / "mechanisms"
    (trial,) = read_json(project / "mechanisms.json")["trials"]
    (execution,) = read_json(project / f"trial_{trial['trial']}" / "executions.json")
    assert [w["kind"] for w in execution["warnings"]] == ["chance", "overfitting", "batchnorm"]
    for w in execution["warnings"]:
        assert f"trial {trial['trial']}: Warning ({w['kind']}): {w['message']}" in err
    assert f"best validation accuracy {max(execution['history']['val_accuracy']):.4f} on 180 images" in err
    (model, x, _), = [(a[0], a[1], a[2]) for a in measured]
    assert model.count_params() == trial["params"] and len(x) == diagnostics.MODE_SAMPLE  # the trial's own model

    (row,) = result.table
    assert row["val_accuracy_std"] is None and row["best_trial_val_accuracy_std"] is None
    assert row["time_per_epoch_of_best_s"] == trial["time_per_epoch_s"]
    with open(project / "mechanisms.csv") as f:
        assert next(csv.DictReader(f))["val_accuracy_std"] == ""
    print_table(result)
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("plain"))
    assert line.count("± n/a") == 2 and "0.0000" not in line and f"{trial['time_per_epoch_s']:.2f}" in line
    page = open(report(str(project), log=lambda *a: None), encoding="utf-8").read()
    assert "<td>n/a</td>" in page and "<td>chance, overfitting, batchnorm</td>" in page


def test_the_tables_s_per_epoch_is_the_best_trials_not_a_mix_of_model_sizes():
    from tuning.search import mechanism_table

    def row(trial, score, seconds):
        return {"trial": trial, "mechanism": "plain", "score": score, "val_accuracy": score, "params": 10,
                "time_per_epoch_s": seconds, "executions": [{"val_accuracy": score}]}

    (table,) = mechanism_table([row("1", 0.8, 3.0), row("2", 0.9, 1.0), row("3", 0.7, 5.0)], "val_accuracy")
    assert table["time_per_epoch_of_best_s"] == 1.0 and table["time_per_epoch_s"] == 3.0
    assert table["best_trial_val_accuracy_std"] is None and table["val_accuracy_std"] == pytest.approx(0.1)
