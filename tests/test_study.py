"""The depth study: its statistics against references written from the equations, the lesions against hand-built
models, the section-4 criterion on hand-made trajectories, and a tiny study end to end (files, reuse, refusals)."""

import json
import math
import os

import keras
import numpy as np
import pytest

from lacnn_zoo import build_model, cli
from lacnn_zoo.experiments.study import (
    backbone_units,
    climbing_criterion,
    depth_study,
    gated_model,
    lesion_accuracies,
    mean_drop,
    variant_overrides,
    welch,
)

# ------------------------------------------------------------------------------------- statistics


def _t_density(x, df):
    """Student's t density, from its formula."""
    log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    return np.exp(log_c - (df + 1) / 2 * np.log1p(x * x / df))


def _t_tail(t, df):
    """P(T > t) by the trapezoid rule on the density, substituting x = t + u / (1 - u) to reach infinity."""
    u = np.linspace(0.0, 1.0, 400001)[:-1]
    x = t + u / (1 - u)
    f = _t_density(x, df) / (1 - u) ** 2
    return float(np.sum((f[1:] + f[:-1]) / 2 * np.diff(u)))


def test_welch_matches_the_equations_and_a_slowly_integrated_t_distribution():
    rng = np.random.default_rng(0)
    for na, nb in ((3, 3), (3, 5), (6, 4)):
        a, b = rng.normal(0.9, 0.02, na), rng.normal(0.85, 0.06, nb)
        got = welch(a, b)
        va, vb = np.sum((a - a.mean()) ** 2) / (na - 1) / na, np.sum((b - b.mean()) ** 2) / (nb - 1) / nb
        t = (a.mean() - b.mean()) / math.sqrt(va + vb)
        df = (va + vb) ** 2 / (va ** 2 / (na - 1) + vb ** 2 / (nb - 1))
        assert got["t"] == pytest.approx(t, rel=1e-9)
        assert got["df"] == pytest.approx(df, rel=1e-9)
        assert got["p"] == pytest.approx(2 * _t_tail(abs(t), df), abs=2e-5)
        # The 95% interval's half width is the t quantile times the standard error: 2.5% in each tail.
        half = (got["ci_high"] - got["ci_low"]) / 2
        assert got["ci_low"] + half == pytest.approx(a.mean() - b.mean())
        assert _t_tail(half / math.sqrt(va + vb), df) == pytest.approx(0.025, abs=2e-5)
    from scipy import stats

    a, b = [0.91, 0.93, 0.90], [0.80, 0.86, 0.83]
    assert welch(a, b)["p"] == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue, rel=1e-9)


def test_welch_is_undefined_without_two_values_or_without_spread():
    assert welch([0.9], [0.8, 0.7])["p"] is None
    assert welch([0.1, 0.1, 0.1], [0.1, 0.1])["p"] is None
    assert welch([0.9], [0.8, 0.7])["diff"] == pytest.approx(0.15)


# ------------------------------------------------------------------------------------- section-4 criterion


def test_climbing_criterion_reads_the_shift_from_the_before_training_row():
    n = 6
    w0 = np.array([0.30, 0.10, 0.15, 0.15, 0.15, 0.15])  # layer 1 largest before training
    # Shifts: epoch 1 peaks at layer 2, epoch 2 at layer 2, epoch 3 at layer 4: lowest third, then climbing.
    shifts = np.zeros((3, n))
    shifts[0, 1], shifts[1, 1], shifts[2, 3] = 0.05, 0.04, 0.06
    weights = np.vstack([w0, w0 + shifts])
    agrees, argmax = climbing_criterion(np.arange(4), weights)
    assert argmax == [2, 2, 4] and agrees  # argmax of w itself would be layer 1 every epoch
    # Falling back down breaks "non-decreasing".
    shifts[2] = 0.0
    shifts[2, 0] = 0.06
    assert climbing_criterion(np.arange(4), np.vstack([w0, w0 + shifts])) == (False, [2, 2, 1])
    # Starting above the lowest third (layer 3 of 6: ceil(6/3) = 2) fails even when it climbs afterwards.
    shifts = np.zeros((2, n))
    shifts[0, 2], shifts[1, 5] = 0.05, 0.05
    assert climbing_criterion(np.arange(3), np.vstack([w0, w0 + shifts])) == (False, [3, 6])


# ------------------------------------------------------------------------------------- lesions

TINY = dict(widths=(4, 4, 4), depth=1)


def _models():
    """Tiny models whose BatchNormalization parameters and statistics are random: at initialisation BN(0) = 0, so
    a lesion of a layer's input, or of gamma alone, would look like the lesion of its output."""
    keras.utils.set_random_seed(0)
    models = {
        "plain": build_model("plain_cnn_tiny", input_shape=(8, 8, 1), **TINY),
        "residual": build_model("resnet8", input_shape=(8, 8, 1), widths=(4, 4, 4)),
        "layer_attended": build_model("lacnn_static_vector_tiny", input_shape=(8, 8, 1), **TINY),
        "dynamic_recurrent": build_model("lacnn_dynamic_recurrent_tiny", input_shape=(8, 8, 1), **TINY),
    }
    rng = np.random.default_rng(5)
    draw = {"gamma": lambda n: rng.uniform(0.5, 1.5, n), "beta": lambda n: rng.normal(0, 0.5, n),
            "moving_mean": lambda n: rng.normal(0, 0.5, n), "moving_variance": lambda n: rng.uniform(0.5, 1.5, n)}
    for model in models.values():
        for v in model.weights:
            if v.name in draw and len(v.shape) == 1:
                v.assign(draw[v.name](v.shape[0]).astype("float32"))
    return models


def _reference(model, x, zeroed):
    """The network evaluated layer by layer by hand, the output of layer `zeroed` replaced by zeros."""
    units = backbone_units(model)
    h, taps = keras.ops.convert_to_tensor(x), []
    for name in units:
        h = model.get_layer(name)(h, training=False)
        if name == zeroed:
            h = keras.ops.zeros_like(h)
        taps.append(h)
    try:
        mechanism = model.get_layer("layer_attention")
    except ValueError:  # a chain: pooling and the classifier
        return keras.ops.convert_to_numpy(model.get_layer("logits")(model.get_layer("avg_pool")(h)))
    formed = [model.get_layer(f"tap{i}_form")(t) for i, t in enumerate(taps, 1)]
    if any(layer.name == "tap1_transform" for layer in model.layers):
        formed = [model.get_layer(f"tap{i}_transform")(t) for i, t in enumerate(formed, 1)]
    return keras.ops.convert_to_numpy(model.get_layer("logits")(mechanism(formed)))


@pytest.mark.parametrize("family", ["plain", "residual", "layer_attended", "dynamic_recurrent"])
def test_zeroing_a_layer_output_matches_a_hand_built_network(family):
    model = _models()[family]
    x = np.random.default_rng(1).normal(size=(5, 8, 8, 1)).astype("float32")
    units = backbone_units(model)
    assert len(units) == (4 if family == "residual" else 3)
    gated, gates = gated_model(model, units)
    np.testing.assert_allclose(gated.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    for unit in units:
        gates[unit].gate.assign(0.0)
        got = gated.predict(x, verbose=0)
        gates[unit].gate.assign(1.0)
        np.testing.assert_allclose(got, _reference(model, x, unit), rtol=1e-5, atol=1e-5)
        assert not np.allclose(got, model.predict(x, verbose=0), atol=1e-4)  # the lesion changes the output
    assert len(gated.weights) == len(model.weights) + len(units)  # shared layers, one gate each


def test_lesion_accuracies_against_hand_computed_cases():
    models = _models()
    rng = np.random.default_rng(2)
    x = rng.normal(size=(200, 8, 8, 1)).astype("float32")
    plain = models["plain"]
    kernel = plain.get_layer("logits").get_weights()[0]
    plain.get_layer("logits").set_weights([kernel, np.zeros(10, "float32")])
    counts = np.bincount(np.argmax(plain.predict(x, verbose=0), -1), minlength=10)
    rare = int(np.argmin(counts))
    bias = np.zeros(10, "float32")
    bias[rare] = 1e-3  # the largest bias: the answer when the features are all zero
    plain.get_layer("logits").set_weights([kernel, bias])
    # Labels: the model's own answers, every fourth one replaced, so clean accuracy is about 0.75.
    y = np.argmax(plain.predict(x, verbose=0), -1)
    y[::4] = (y[::4] + 1) % 10
    before = [w.copy() for w in plain.get_weights()]
    result = lesion_accuracies(plain, x, y, seed=7)
    clean = float(np.mean(np.argmax(plain.predict(x, verbose=0), -1) == y))
    assert result["clean"] == pytest.approx(clean) and 0.6 < clean < 0.9
    # The last layer's output zeroed: the pooled features are 0, the logits are the bias, every answer is `rare`.
    assert result["zero"][-1] == pytest.approx(np.mean(y == rare))
    assert result["zero"][-1] < clean - 0.3
    assert mean_drop(result, "zero") == pytest.approx(clean - np.mean(result["zero"]))
    assert mean_drop(result, "reinit") == pytest.approx(clean - np.mean(result["reinit"]))
    assert len(set(result["reinit"])) > 1  # the layers' lesions differ, so a lesion of the wrong layer shows
    # Re-initialising layer k = that layer's weights from a model cloned under the same seed, the rest unchanged.
    keras.utils.set_random_seed(7)
    fresh = keras.models.clone_model(plain)
    for k, unit in enumerate(backbone_units(plain)):
        copy = keras.models.clone_model(plain)
        copy.set_weights(before)
        copy.get_layer(unit).set_weights(fresh.get_layer(unit).get_weights())
        expected = float(np.mean(np.argmax(copy.predict(x, verbose=0), -1) == y))
        assert result["reinit"][k] == pytest.approx(expected)
    for old, new in zip(before, plain.get_weights()):  # the model is left as it was
        np.testing.assert_array_equal(old, new)
    assert result["zero_branch"] is None

    # A residual block with an identity shortcut whose branch is zeroed is the identity (relu(0 + h) = h, h >= 0):
    # the same as the network without that block.
    resnet = models["residual"]
    assert backbone_units(resnet) == ["stem", "stage1_block1", "stage2_block1", "stage3_block1"]
    y = np.argmax(resnet.predict(x, verbose=0), -1)
    result = lesion_accuracies(resnet, x, y)
    assert result["clean"] == 1.0
    h = resnet.get_layer("stem")(x, training=False)
    for name in ("stage2_block1", "stage3_block1"):  # stage1_block1 skipped
        h = resnet.get_layer(name)(h, training=False)
    skipped = keras.ops.convert_to_numpy(resnet.get_layer("logits")(resnet.get_layer("avg_pool")(h)))
    assert result["zero_branch"][0] is None  # the stem is no residual block
    assert result["zero_branch"][1] == pytest.approx(float(np.mean(np.argmax(skipped, -1) == y)))
    assert result["zero_branch"][1] < 0.95


# ------------------------------------------------------------------------------------- the study, tiny


def test_variants_reach_the_stated_depths():
    for depth, convs in ((8, 6), (20, 18), (56, 54)):
        for variant in ("plain", "lacnn_self_attention"):
            name, knobs = variant_overrides(variant, depth, (4, 4, 4))
            model = build_model(name, input_shape=(8, 8, 1), **knobs)
            assert len(backbone_units(model)) == convs
        name, knobs = variant_overrides("resnet_beta", depth, (4, 4, 4))
        model = build_model(name, input_shape=(8, 8, 1), **knobs)
        assert len(backbone_units(model)) == 1 + (depth - 2) // 2  # stem + blocks of two convolutions
        assert model.get_layer("stage1_block1").mixing == "beta"


@pytest.mark.long
def test_tiny_study_writes_its_tables_reuses_finished_runs_and_refuses_other_configurations(tmp_path, monkeypatch):
    from scipy import stats

    out = tmp_path / "study"
    kwargs = dict(variants=["plain", "lacnn_static_vector"], depths=[8], seeds=[0, 1], epochs=1, widths=[4, 4, 4],
                  out_dir=str(out), log=lambda *a: None)
    summary = depth_study(**kwargs)
    for name in ("study.json", "study.md", "accuracy.csv", "gradients.csv", "attention.csv", "robustness.csv",
                 "training_curves.png", "test_accuracy.png", "gradient_ratio.png", "attention.png", "robustness.png"):
        assert (out / name).stat().st_size > 0, name
    for variant in ("plain", "lacnn_static_vector"):
        for seed in (0, 1):
            run = out / variant / "depth8" / f"seed{seed}"
            assert (run / "metrics.json").exists() and (run / "grad_norms.csv").exists()
            assert (out / "lesions" / f"{variant}-d8-s{seed}.json").exists()
            assert json.load(open(run / "run.json"))["overrides"]["depth"] == 2  # (8 - 2) / 3 layers per stage
    # The table's numbers are the runs' numbers, and its test is Welch's on them.
    test = {v: [json.load(open(out / v / "depth8" / f"seed{s}" / "metrics.json"))["test_accuracy"] for s in (0, 1)]
            for v in ("plain", "lacnn_static_vector")}
    row = next(r for r in summary["accuracy"] if r["variant"] == "lacnn_static_vector")
    assert row["test_acc_mean"] == pytest.approx(np.mean(test["lacnn_static_vector"]))
    assert row["test_acc_diff_vs_plain"] == pytest.approx(np.mean(test["lacnn_static_vector"]) - np.mean(test["plain"]))
    if np.std(test["plain"]) + np.std(test["lacnn_static_vector"]) > 0:
        expected = stats.ttest_ind(test["lacnn_static_vector"], test["plain"], equal_var=False).pvalue
        assert row["test_acc_p_vs_plain"] == pytest.approx(expected, rel=1e-6)
    lesion = json.load(open(out / "lesions" / "plain-d8-s0.json"))
    robust = next(r for r in summary["robustness"] if r["variant"] == "plain")
    drops = [mean_drop(json.load(open(out / "lesions" / f"plain-d8-s{s}.json")), "zero") for s in (0, 1)]
    assert robust["zero_drop_mean"] == pytest.approx(np.mean(drops))
    assert len(lesion["zero"]) == len(lesion["reinit"]) == 6
    attention = summary["attention"][0]
    assert attention["layers"] == 6 and attention["seeds"] == 2
    assert set(summary["predictions"]) == set(summary["criteria"])
    report = (out / "study.md").read_text()
    assert f"| 8 | lacnn_static_vector | 6 | {row['params']:,} |" in report
    assert "degradation: not measurable here" in report

    # Run again: every finished run and lesion file is reused, nothing is trained.
    import lacnn_zoo.training

    def no_training(*args, **kw):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(lacnn_zoo.training, "train", no_training)
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("metrics.json")}
    again = depth_study(**kwargs)
    assert again["accuracy"] == summary["accuracy"]
    assert {p: p.stat().st_mtime_ns for p in out.rglob("metrics.json")} == stamps
    # A lost lesion file is recomputed, from the saved model, identically.
    os.remove(out / "lesions" / "plain-d8-s1.json")
    again = depth_study(**kwargs)
    assert again["robustness"] == summary["robustness"]

    # Another configuration in the same folder is refused before anything runs.
    with pytest.raises(ValueError, match="epochs: stored 1, asked 2"):
        depth_study(**{**kwargs, "epochs": 2})
    with pytest.raises(ValueError, match=r"overrides\[widths\]"):
        depth_study(**{**kwargs, "widths": [4, 4, 8]})
    # A folder with files the study did not write is refused, and nothing in it is touched.
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="notes.txt"):
        depth_study(**{**kwargs, "out_dir": str(foreign)})
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]


@pytest.mark.parametrize("argv, message", [
    (["--depths", "9"], "--depths must be one or more integers 6n + 2 from 8 to 1202"),
    (["--widths", "10000000", "8", "8"], "A 3x3 convolution between --widths 10000000 8 8 takes 3274.2 TiB"),
    (["--variants", "resnet_add"], "`variants` must include 'plain'"),
    (["--variants", "plain,densenet"], "--variants takes a comma-separated subset"),
    (["--seeds", "1", "1"], "--seeds must be one or more distinct seeds"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, argv, message):
    out = tmp_path / "never"
    assert cli.main(["study", "depth", "--out", str(out), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lacnn-zoo: error:") and message in err and "\n" not in err
    assert not out.exists()


def _plain_tables(train_acc_by_depth):
    accuracy = [{"depth": d, "variant": "plain", "train_acc_values": v, "seeds": len(v)}
                for d, v in train_acc_by_depth.items()]
    gradients = [{"depth": d, "variant": "plain", "log10_ratio_e0_values": [-1.0 - 0.01 * i for i in range(len(v))]}
                 for d, v in train_acc_by_depth.items()]
    return accuracy, gradients


@pytest.mark.parametrize("shallow,deep,expected", [
    ([0.994, 0.998], [0.141, 0.267], "not shown: n=2 per side"),  # the case: 2 seeds, ~1 df
    ([0.994, 0.996, 0.998], [0.141, 0.204, 0.267], "held"),  # the same effect with 3 seeds
    ([0.141, 0.204, 0.267], [0.994, 0.996, 0.998], "did not hold"),  # significant, the other way
    ([0.50, 0.51], [0.90, 0.91], "not shown: n=2 per side"),  # 2 seeds, significant the other way: still 2
    ([0.995, 0.996], [0.993, 0.9935], "not shown: n=2 per side"),  # 2 seeds, p < 0.05 the predicted way (quick)
    ([0.90, 0.95, 0.85], [0.92, 0.87, 0.89], "did not hold"),  # 3 seeds, no difference
    ([0.90, 0.95, 0.85], [0.92, 0.87], "not shown: n=2 per side"),  # the smaller side decides
])
def test_a_verdict_separates_evidence_against_from_too_few_seeds(shallow, deep, expected):
    from lacnn_zoo.experiments.study import verdicts, welch

    accuracy, gradients = _plain_tables({20: shallow, 56: deep})
    got = verdicts(accuracy, gradients, [], [], [20, 56], ["plain"])["degradation"]["verdict"]
    assert got.startswith(expected), got
    test = welch(deep, shallow)
    if expected == "held":
        assert test["p"] < 0.05 and test["diff"] < 0
    if expected.startswith("not shown"):
        assert min(len(shallow), len(deep)) == 2


def test_verdict_needs_the_predicted_sign():
    from lacnn_zoo.experiments.study import verdict

    assert verdict(0.001, -0.3, 5, -1) == "held" and verdict(0.001, 0.3, 5, -1) == "did not hold"
    assert verdict(0.001, 0.3, 5, +1) == "held" and verdict(0.001, -0.3, 3, +1) == "did not hold"
    assert verdict(0.001, 0.3, 2, +1).startswith("not shown")  # too few seeds, however small p
    assert verdict(None, 0.0, 2, +1).startswith("not shown") and verdict(0.3, 0.1, 3, +1) == "did not hold"


def test_robustness_and_training_verdicts_need_the_predicted_direction():
    from lacnn_zoo.experiments.study import verdicts

    def tables(drop_diff, drop_p, train_diff, train_p):
        m = "lacnn_static_vector"
        accuracy = [{"depth": 20, "variant": "plain", "train_acc_values": [0.9, 0.91, 0.92], "seeds": 3},
                    {"depth": 20, "variant": m, "train_acc_values": [0.9, 0.91, 0.92], "seeds": 3,
                     "train_acc_diff_vs_plain": train_diff, "train_acc_p_vs_plain": train_p}]
        grad = {"log10_ratio_e0_values": [1.0, 1.1, 1.2], "log10_ratio_e0_mean": 1.1, "log10_ratio_e0_p_vs_plain": 0.5}
        gradients = [{"depth": 20, "variant": v, **grad} for v in ("plain", m)]
        robustness = [{"depth": 20, "variant": m, "zero_drop_diff_vs_plain": drop_diff, "zero_drop_p_vs_plain": drop_p,
                       "reinit_drop_diff_vs_plain": drop_diff, "reinit_drop_p_vs_plain": drop_p}]
        out = verdicts(accuracy, gradients, [], robustness, [20], ["plain", m])
        return (out["robust_to_downstream_corruption"]["verdict"][f"{m}@20"]["zero"],
                out["attended_trains_where_plain_degrades"]["verdict"][m])

    assert tables(-0.2, 0.001, +0.3, 0.001) == ("held", "held")  # smaller drop, higher training accuracy
    assert tables(+0.2, 0.001, -0.3, 0.001) == ("did not hold", "did not hold")  # significant, the wrong way
    assert tables(-0.2, 0.4, +0.3, 0.4) == ("did not hold", "did not hold")  # 3 seeds, not significant


@pytest.mark.parametrize("kwargs,named", [
    (dict(robustness_examples=10**18), "`robustness_examples` must be an integer from 1 to 2147483647"),
    (dict(epochs=10**18), "`epochs` must be an integer from 1 to 2147483647"),
    (dict(seeds=[-1]), "`seeds` must be an integer from 0 to 4294967295"),
    (dict(depths=[6 * 10**6 + 2]), "`depths` must be one or more integers 6n \\+ 2 from 8 to 1202"),
    (dict(widths=[8, 10**18, 8]), "`widths` must be an integer from 1 to 2147483647"),
])
def test_absurd_counts_are_refused_before_any_run(tmp_path, monkeypatch, kwargs, named):
    from lacnn_zoo.experiments.study import runs

    def run_one(*args, **kw):
        raise AssertionError("a model was trained")

    monkeypatch.setattr(runs, "run_one", run_one)
    with pytest.raises(ValueError, match=named):
        depth_study(["plain"], **{"depths": [8], "seeds": [0], "epochs": 1, "out_dir": str(tmp_path / "s"),
                                  **kwargs})
    assert not (tmp_path / "s").exists()


def _gradient_rows(depth, m, e0, e1):
    """Gradient-table rows at one depth: the plain backbone's, and mechanism `m`'s with its Welch p and mean at
    initialisation (e0) and after epoch 1 (e1), each given as (p, mean difference to plain)."""
    plain = {"depth": depth, "variant": "plain"}
    row = {"depth": depth, "variant": m}
    for key, (p, diff) in (("log10_ratio_e0", e0), ("log10_ratio_e1", e1)):
        plain.update({f"{key}_values": [1.0, 1.1, 1.2], f"{key}_mean": 1.1, f"{key}_p_vs_plain": None})
        row.update({f"{key}_values": [1.0 + diff, 1.1 + diff, 1.2 + diff], f"{key}_mean": 1.1 + diff,
                    f"{key}_p_vs_plain": p})
    return [plain, row]


def test_attention_reduces_dilution_only_where_both_measurements_show_it():
    """The criterion: higher first/last gradient ratio than plain, p < 0.05, at initialisation AND after epoch 1, at
    each depth on its own: one measurement (or one depth) showing it is not enough."""
    from lacnn_zoo.experiments.study import verdicts

    m = "lacnn_static_vector"
    shown, not_shown, wrong_way = (0.001, 0.3), (0.5, 0.05), (0.001, -0.3)  # (p, diff): 3 seeds per side
    cases = {8: (shown, shown), 20: (shown, not_shown), 56: (not_shown, shown), 110: (shown, wrong_way)}
    by_hand = {8: "held", 20: "did not hold", 56: "did not hold", 110: "did not hold"}
    gradients = [r for depth, (e0, e1) in cases.items() for r in _gradient_rows(depth, m, e0, e1)]
    accuracy = [{"depth": d, "variant": v, "train_acc_values": [0.9, 0.91, 0.92], "seeds": 3,
                 "train_acc_p_vs_plain": None, "train_acc_diff_vs_plain": 0.0} for d in cases for v in ("plain", m)]
    robustness = [{"depth": d, "variant": m, **{f"{k}_drop_{s}_vs_plain": None for k in ("zero", "reinit")
                                                 for s in ("diff", "p")}} for d in cases]
    out = verdicts(accuracy, gradients, [], robustness, list(cases), ["plain", m])
    assert out["attention_reduces_dilution"]["verdict"] == {f"{m}@{d}": v for d, v in by_hand.items()}


def test_the_climbing_prediction_needs_a_majority_of_seeds_not_any(monkeypatch):
    """Section 4 holds for (mechanism, depth) when at least 2 of 3 seeds agree: 1 agreeing seed is not enough.
    Each seed's trajectory is made by hand to agree (peak at layer 1, then 3) or not (peak at layer 6 first)."""
    from lacnn_zoo.experiments.study import summary as study

    n, m = 6, "lacnn_static_vector"
    w0 = np.full(n, 1 / n)
    agree, disagree = np.zeros((2, n)), np.zeros((2, n))
    agree[0, 0], agree[1, 2], disagree[0, 5], disagree[1, 5] = 0.05, 0.05, 0.05, 0.05
    trajectories = {}

    class Run:
        def __init__(self, path):
            pass

        def metrics(self):
            return {"test_accuracy": 0.9, "params": 100, "time_per_epoch_s": 1.0}

    monkeypatch.setattr(study, "RunFolder", Run)
    monkeypatch.setattr(study, "history", lambda *a: [{"accuracy": "0.9", "loss": "0.3"}])
    monkeypatch.setattr(study, "read_json", lambda path: {"clean": 0.9, "units": ["u"], "zero": [0.5],
                                                          "reinit": [0.6], "zero_branch": []})
    monkeypatch.setattr(study, "_grad_ratio", lambda *a: -1.0)
    monkeypatch.setattr(study, "attention_rows", lambda out, variant, depth, seed: trajectories[seed])
    for agreeing, expected in ((1, "did not hold"), (2, "held"), (3, "held")):
        for seed in range(3):
            shift = agree if seed < agreeing else disagree
            trajectories[seed] = (np.arange(3), np.vstack([w0, w0 + shift]))
        out = study.summarise("unused", ["plain", m], [8], [0, 1, 2], epochs=2)
        assert out["attention"][0]["seeds_agreeing"] == agreeing
        assert out["predictions"]["lowest_layer_first_then_climbing"]["verdict"] == {f"{m}@8": expected}, agreeing
