import json
import math
import os

import pytest

from lacnn_zoo import cli
from lacnn_zoo.experiments.bench import backbone_overhead_table, baseline_of, overhead_table, ratio_spread, time_steps


def test_time_steps_interleaves_and_measures():
    calls = []
    times = time_steps({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
                       rounds=2, steps_per_round=2, warmup=1)
    # Warm-up a, b; round 1 a a b b; round 2 starts with b.
    assert calls == ["a", "b", "a", "a", "b", "b", "b", "b", "a", "a"]
    assert set(times) == {"a", "b"} and all(t >= 0 for t in times.values())


def test_baseline_is_the_backbone_the_variant_taps():
    label, (name, knobs) = baseline_of("lacnn_self_attention_tiny")
    assert label == "plain backbone" and name == "plain_cnn"
    assert knobs == {"widths": (16, 32, 64), "depth": 2, "downsample": "stride"}
    label, (name, knobs) = baseline_of("lacnn_static_vector_resnet8")
    assert name == "resnet20" and knobs["depth"] == 8
    assert baseline_of("resnet20") is None


def test_overhead_table_and_cli(tmp_path, capsys):
    rows = overhead_table(["lacnn_innate_static_tiny", "plain_cnn_tiny"], input_shape=(8, 8, 1), batch_size=4,
                          rounds=1, steps_per_round=1, warmup=1)
    assert [r["model"] for r in rows] == ["lacnn_innate_static_tiny", "plain_cnn_tiny"]
    assert rows[0]["ratio"] > 0 and math.isnan(rows[1]["ratio"])
    out = tmp_path / "bench.csv"
    assert cli.main(["bench", "lacnn_static_vector_tiny", "--input-shape", "8", "8", "1", "--batch-size", "4",
                     "--rounds", "1", "--steps", "1", "--csv", str(out)]) == 0
    assert "ratio" in capsys.readouterr().out
    assert out.read_text().splitlines()[0].startswith("model,family,baseline,params,mflops_per_image,step_ms")


def test_flops_of_a_single_convolution_are_counted_exactly():
    import keras

    from lacnn_zoo.experiments.bench import flops_per_image

    model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Conv2D(2, 3, padding="same", use_bias=False)])
    # 4 x 4 outputs x 2 filters x (3 x 3 x 1) multiply-adds, 2 FLOPs each.
    assert flops_per_image(model, (4, 4, 1)) == 2 * 4 * 4 * 2 * 9


def test_resnet20_flops_match_the_paper():
    from lacnn_zoo import build_model
    from lacnn_zoo.experiments.bench import flops_per_image

    # He et al. 2015: ResNet-20 ~ 41M multiply-adds on 32x32 inputs.
    assert flops_per_image(build_model("resnet20"), (32, 32, 3)) / 2 == pytest.approx(41e6, rel=0.03)


@pytest.mark.skipif(not os.access("/proc/self/clear_refs", os.W_OK), reason="needs Linux VmHWM")
def test_peak_memory_is_the_step_own_peak():
    import numpy as np

    from lacnn_zoo.experiments.bench import peak_step_memory_mib

    def allocate(mib):
        def step():
            buffer = np.ones(mib * 2**20 // 8)  # written, so resident; freed before the step returns
            del buffer
        return step

    # A 64 MiB buffer freed before the step ends still sets the peak: 64 MiB, not what is left after the step.
    assert 56 < peak_step_memory_mib(allocate(64), lambda: None) < 80
    # The warm-up's own, larger peak (128 MiB) is forgotten: a step that allocates nothing peaks at about 0.
    assert peak_step_memory_mib(lambda: None, allocate(128)) < 16
    assert 56 < peak_step_memory_mib(allocate(64), allocate(128)) < 80


@pytest.mark.skipif(not os.access("/proc/self/clear_refs", os.W_OK), reason="needs Linux VmHWM")
def test_peak_memory_of_a_training_step_grows_with_the_batch_by_the_activations():
    from lacnn_zoo import build_model
    from lacnn_zoo.experiments.bench import measure_memory

    shape, small, large = (32, 32, 1), 8, 136
    # A training step keeps every Conv-BN-ReLU layer's output for the backward pass (and more: BN and ReLU
    # inputs): the extra images' layer outputs are a lower bound on the extra peak, a few times it an upper one.
    model = build_model("plain_cnn_tiny", input_shape=shape)
    per_image = sum(math.prod(layer.output.shape[1:]) for layer in model.layers if layer.name.startswith("stage"))
    extra = (large - small) * per_image * 4 / 2**20  # 28 MiB of float32 layer outputs
    grown = measure_memory("plain_cnn_tiny", shape, large) - measure_memory("plain_cnn_tiny", shape, small)
    assert extra < grown < 6 * extra, (grown, extra)


def test_ratio_is_taken_per_round_so_a_slow_round_slows_both_sides():
    samples = {"variant": [2.0, 4.0, 3.0], "base": [1.0, 2.0, 1.0]}  # round 2 ran at half speed for both
    assert ratio_spread(samples, "variant", "base") == (2.0, 2.0, 3.0)


def test_backbone_overhead_against_a_pooled_linear_head():
    # VGG16: a keras.applications backbone of 19 layers, so tracing its training step is cheap.
    rows = backbone_overhead_table("VGG16", mechanisms=["static_vector"], input_shape=(32, 32, 3),
                                   batch_size=2, rounds=2, steps_per_round=1, warmup=1)
    base, head = rows
    assert base["model"] == "VGG16 backbone + linear" and base["ratio"] == 1.0
    # The bare backbone's parameters plus one linear layer over its last map (512 channels for 10 classes).
    import keras

    bare = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    assert base["params"] == bare.count_params() + 512 * 10 + 10
    assert head["ratio_min"] <= head["ratio"] <= head["ratio_max"] and head["params"] > bare.count_params()


def test_precision_rows_time_the_model_against_itself_in_float32():
    import keras

    rows = overhead_table(["plain_cnn_tiny"], input_shape=(8, 8, 1), batch_size=4, rounds=1, steps_per_round=1,
                          warmup=1, flops=False, precision="mixed_bfloat16")
    assert rows[0]["baseline"] == "plain_cnn_tiny float32" and rows[0]["ratio"] > 0
    assert keras.config.dtype_policy().name == "float32"


# --- absurd counts and sizes: refused before any model is built ------------------------------------------------

@pytest.fixture
def nothing_built(monkeypatch):
    from lacnn_zoo.experiments import bench

    def build(*args, **kwargs):
        raise AssertionError("a model was built")

    monkeypatch.setattr(bench, "build_model", build)


@pytest.mark.parametrize("kwargs,named", [
    (dict(rounds=10**18), "`rounds` must be an integer from 1 to 10000"),
    (dict(steps_per_round=10**18), "`steps_per_round` must be an integer from 1 to 10000"),
    (dict(warmup=-1), "`warmup` must be an integer from 0 to 10000"),
    (dict(batch_size=10**18), "`batch_size` must be an integer from 1 to 2147483647"),
    (dict(input_shape=(-1, 8, 1)), "`input_shape` must be an integer from 1 to"),
    (dict(input_shape=(100000, 100000, 3)), "batch of `batch_size` 128 x `input_shape` 100000 100000 3 takes"),
    (dict(input_shape=(8, 8, 100000000)), "more than this machine's"),
])
def test_the_python_tables_refuse_absurd_counts_and_sizes_before_building(nothing_built, kwargs, named):
    with pytest.raises(ValueError, match=named):
        overhead_table(["plain_cnn_tiny"], **kwargs)
    with pytest.raises(ValueError, match=named.replace("128", "16")):
        backbone_overhead_table("VGG16", **{"input_shape": (32, 32, 3), **kwargs})


@pytest.mark.parametrize("shape", [("100000", "100000", "3"), ("8", "8", "100000000")])
def test_cli_refuses_an_input_batch_larger_than_the_machine_in_one_line(nothing_built, capsys, shape):
    assert cli.main(["bench", "plain_cnn_tiny", "--input-shape", *shape]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lacnn-zoo: error: One float32 input batch of --batch-size 128 x "
                                               f"--input-shape {' '.join(shape)} takes"), err
    assert "MemoryError" not in err[0] and "internal error" not in err[0]


def test_bench_aa_refuses_attention_logits_larger_than_the_machine(capsys):
    from lacnn_zoo.experiments import bench_aa

    with pytest.raises(SystemExit) as exit_info:
        bench_aa.main(["--sizes", "4096", "--batch-size", "64"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 1, err
    assert "attention logits of --batch-size 64 x --heads 8 at --sizes 4096 takes" in err[0]


def test_bench_aa_reports_every_variant_and_its_progress(tmp_path, capsys, monkeypatch):
    """The command as a user runs it, shrunk: one row per variant, keras_mha the 1.00x baseline, a progress line
    per round on stderr (the default ran minutes with none)."""
    from lacnn_zoo.experiments import bench_aa

    timed = []
    real = bench_aa.time_step_samples
    monkeypatch.setattr(bench_aa, "time_step_samples", lambda steps, **kw: timed.append(kw) or real(steps, **kw))

    out = tmp_path / "aa.json"
    assert bench_aa.main(["--sizes", "4", "--batch-size", "2", "--channels", "8", "--heads", "2", "--dk", "4",
                          "--dv", "4", "--rounds", "2", "--steps", "1", "--warmup", "0", "--no-memory",
                          "--json", str(out)]) == 0
    captured = capsys.readouterr()
    assert [(t["rounds"], t["steps_per_round"], t["warmup"]) for t in timed] == [(2, 1, 0)]
    assert [line.split(" (")[0] for line in captured.err.splitlines() if "round" in line] == [
        "bench_aa: 4x4: round 1/2 timed", "bench_aa: 4x4: round 2/2 timed"]
    rows = json.load(open(out))
    assert [r["variant"] for r in rows] == list(bench_aa.VARIANTS)
    assert [r["ratio_to_keras_mha"] for r in rows if r["variant"] == "keras_mha"] == [1.0]
    assert all(r["step_ms_min"] <= r["step_ms"] <= r["step_ms_max"] for r in rows)


def test_the_tables_report_medians_of_the_timed_rounds(monkeypatch):
    """Step times, throughputs and ratios are medians over the rounds (as printed), worked out here by hand from
    rounds given to the tables: one slow round (90 ms against 10 ms) would move a mean, not a median."""
    from lacnn_zoo.experiments import bench

    rounds = {"baseline": [0.020, 0.030, 0.020], "backbone + linear": [0.020, 0.030, 0.020]}
    monkeypatch.setattr(bench, "time_step_samples",
                        lambda steps, **kwargs: {k: list(rounds.get(k, [0.010, 0.010, 0.090])) for k in steps})
    assert time_steps({"a": None}) == {"a": 0.010}
    # Per round 10/20, 10/30, 90/20: the median ratio 0.5, the range 1/3 to 4.5.
    by_hand = {"step_ms": 10.0, "baseline_step_ms": 20.0, "ratio": 0.5, "ratio_min": 1 / 3, "ratio_max": 4.5,
               "images_per_s": 4 / 0.010}
    (row,) = overhead_table(["lacnn_static_vector_tiny"], input_shape=(8, 8, 1), batch_size=4, flops=False)
    assert {k: row[k] for k in by_hand} == pytest.approx(by_hand)
    assert row["inference_images_per_s"] == pytest.approx(4 / 0.010)
    base, head = backbone_overhead_table("VGG16", mechanisms=["static_vector"], input_shape=(32, 32, 3),
                                         batch_size=4)
    assert {k: head[k] for k in by_hand} == pytest.approx(by_hand)
    assert base["step_ms"] == pytest.approx(20.0) and base["images_per_s"] == pytest.approx(4 / 0.020)
