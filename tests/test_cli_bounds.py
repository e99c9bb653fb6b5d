"""Every number an option takes is bounded by one table (`lacnn_zoo.options.BOUNDS`): a value out of range is
refused by the parser, before any work, in one line (exit 2) that names the flag and the accepted range."""

import pytest

from export import __main__ as export_main
from export import bench as export_bench
from export import validate as export_validate
from lacnn_zoo import cli, errors, options
from lacnn_zoo.experiments import bench_aa
from tuning import __main__ as tune_main

BIG = str(10**18)

# (main, prog, argv, flag, the accepted range as the message gives it)
CASES = [
    # lacnn-zoo train
    (cli.main, "lacnn-zoo train", ["train", "--epochs", BIG], "--epochs", "from 1 to 2147483647"),
    (cli.main, "lacnn-zoo train", ["train", "--epochs", "0"], "--epochs", "from 1 to 2147483647"),
    (cli.main, "lacnn-zoo train", ["train", "--batch-size", BIG], "--batch-size", "from 1 to 2147483647"),
    (cli.main, "lacnn-zoo train", ["train", "--seed", "-1"], "--seed", "from 0 to 4294967295"),
    (cli.main, "lacnn-zoo train", ["train", "--seed", str(2**32)], "--seed", "from 0 to 4294967295"),
    (cli.main, "lacnn-zoo train", ["train", "--image-size", "8", "100000"], "--image-size", "from 1 to 4096"),
    (cli.main, "lacnn-zoo train", ["train", "--lr", "inf"], "--lr", "a finite number > 0"),
    (cli.main, "lacnn-zoo train", ["train", "--lr", "nan"], "--lr", "a finite number > 0"),
    (cli.main, "lacnn-zoo train", ["train", "--momentum", "1"], "--momentum", "[0, 1)"),
    (cli.main, "lacnn-zoo train", ["train", "--weight-decay", "-1"], "--weight-decay", ">= 0"),
    (cli.main, "lacnn-zoo train", ["train", "--decay-factor", "0"], "--decay-factor", "> 0"),
    (cli.main, "lacnn-zoo train", ["train", "--warmup-epochs", "1e18"], "--warmup-epochs", "[0, 2147483647]"),
    (cli.main, "lacnn-zoo train", ["train", "--label-smoothing", "1"], "--label-smoothing", "[0, 1)"),
    (cli.main, "lacnn-zoo train", ["train", "--clipnorm", "0"], "--clipnorm", "> 0"),
    (cli.main, "lacnn-zoo train", ["train", "--mixup", "inf"], "--mixup", ">= 0"),
    (cli.main, "lacnn-zoo train", ["train", "--cutmix", "-1"], "--cutmix", ">= 0"),
    (cli.main, "lacnn-zoo train", ["train", "--random-erasing", "2"], "--random-erasing", "[0, 1]"),
    (cli.main, "lacnn-zoo train", ["train", "--validation-fraction", "1"], "--validation-fraction", "[0, 1)"),
    (cli.main, "lacnn-zoo train", ["train", "--test-fraction", "nan"], "--test-fraction", "[0, 1)"),
    (cli.main, "lacnn-zoo train", ["train", "--milestones", "1e18"], "--milestones", "epoch numbers from 1 to"),
    (cli.main, "lacnn-zoo train", ["train", "--milestones", "2.5"], "--milestones", "fractions of training"),
    # list, bench
    (cli.main, "lacnn-zoo list", ["list", "--num-classes", BIG], "--num-classes", "from 1 to 2147483647"),
    (cli.main, "lacnn-zoo bench", ["bench", "--rounds", BIG], "--rounds", "from 1 to 10000"),
    (cli.main, "lacnn-zoo bench", ["bench", "--steps", BIG], "--steps", "from 1 to 10000"),
    (cli.main, "lacnn-zoo bench", ["bench", "--batch-size", BIG], "--batch-size", "from 1 to 2147483647"),
    (cli.main, "lacnn-zoo bench", ["bench", "--input-shape", "-1", "8", "1"], "--input-shape", "from 1 to"),
    # compare, study
    (cli.main, "lacnn-zoo compare", ["compare", "--target", "nan"], "--target", "[0, 1]"),
    (cli.main, "lacnn-zoo compare", ["compare", "--target", "-1"], "--target", "[0, 1]"),
    (cli.main, "lacnn-zoo compare", ["compare", "--target", "inf"], "--target", "[0, 1]"),
    (cli.main, "lacnn-zoo compare", ["compare", "--epochs", BIG], "--epochs", "from 1 to 2147483647"),
    (cli.main, "lacnn-zoo compare", ["compare", "--seeds", "0", "-1"], "--seeds", "from 0 to 4294967295"),
    (cli.main, "lacnn-zoo study", ["study", "depth", "--robustness-examples", BIG], "--robustness-examples",
     "from 1 to 2147483647"),
    (cli.main, "lacnn-zoo study", ["study", "depth", "--epochs", BIG], "--epochs", "from 1 to 2147483647"),
    (cli.main, "lacnn-zoo study", ["study", "depth", "--seeds", "-1"], "--seeds", "from 0 to 4294967295"),
    (cli.main, "lacnn-zoo study", ["study", "depth", "--depths", BIG], "--depths", "from 8 to 1202"),
    (cli.main, "lacnn-zoo study", ["study", "depth", "--widths", "8", "0", "8"], "--widths", "from 1 to"),
    # evaluate, predict
    (cli.main, "lacnn-zoo evaluate", ["evaluate", "run", "--seed", "-1"], "--seed", "from 0 to 4294967295"),
    (cli.main, "lacnn-zoo evaluate", ["evaluate", "run", "--batch-size", BIG], "--batch-size", "to 2147483647"),
    (cli.main, "lacnn-zoo predict", ["predict", "run", "a.png", "--top-k", "0"], "--top-k", "from 1 to"),
    (cli.main, "lacnn-zoo predict", ["predict", "run", "a.png", "--batch-size", BIG], "--batch-size", "to 2147483647"),
    # tune (both spellings)
    (cli.main, "lacnn-zoo tune", ["tune", "--trials", BIG], "--trials", "from 1 to 10000"),
    (cli.main, "lacnn-zoo tune", ["tune", "--epochs", BIG], "--epochs", "from 1 to 2147483647"),
    (cli.main, "lacnn-zoo tune", ["tune", "--executions-per-trial", BIG], "--executions-per-trial", "from 1 to 1000"),
    (cli.main, "lacnn-zoo tune", ["tune", "--batch-size", BIG], "--batch-size", "from 1 to 2147483647"),
    (tune_main.main, "python -m tuning", ["--trials", BIG], "--trials", "from 1 to 10000"),
    (tune_main.main, "python -m tuning", ["--seed", "-1"], "--seed", "from 0 to 4294967295"),
    (tune_main.main, "python -m tuning", ["--image-size", "0", "8"], "--image-size", "from 1 to 4096"),
    # export (both spellings), export.validate, export.bench, bench_aa
    (export_main.main, "python -m export", ["m.keras", "--out", "x", "--rtol", "1e18"], "--rtol", "[0, 1)"),
    (export_main.main, "python -m export", ["m.keras", "--out", "x", "--atol", "-1"], "--atol", "[0, 1)"),
    (export_main.main, "python -m export", ["m.keras", "--out", "x", "--max-accuracy-drop", "1e18"],
     "--max-accuracy-drop", "[0, 100]"),
    (export_main.main, "python -m export", ["m.keras", "--out", "x", "--calibration-images", BIG],
     "--calibration-images", "from 1 to 2147483647"),
    (export_main.main, "python -m export", ["m.keras", "--out", "x", "--opset", "99"], "--opset", "from 13 to 18"),
    (cli.main, "lacnn-zoo export", ["export", "m.keras", "--out", "x", "--rtol", "nan"], "--rtol", "[0, 1)"),
    (export_validate.main, "python -m export.validate", ["a.onnx", "--batch-size", BIG], "--batch-size",
     "from 1 to 2147483647"),
    (export_bench.main, "python -m export.bench", ["--rounds", BIG], "--rounds", "from 1 to 10000"),
    (export_bench.main, "python -m export.bench", ["--calls", BIG], "--calls", "from 1 to 10000"),
    (export_bench.main, "python -m export.bench", ["--warmup", BIG], "--warmup", "from 0 to 10000"),
    (export_bench.main, "python -m export.bench", ["--warmup", "-1"], "--warmup", "from 0 to 10000"),
    (export_bench.main, "python -m export.bench", ["--threads", "-1"], "--threads", "from 1 to"),
    (export_bench.main, "python -m export.bench", ["--threads", BIG], "--threads", "per CPU of this machine"),
    (export_bench.main, "python -m export.bench", ["--batch-sizes", "1", BIG], "--batch-sizes", "to 2147483647"),
    (bench_aa.main, "python -m lacnn_zoo.experiments.bench_aa", ["--rounds", BIG], "--rounds", "from 1 to 10000"),
]


@pytest.fixture
def no_work(monkeypatch):
    """Every runner fails the test: a refusal must come before any command starts."""
    def started(*args, **kwargs):
        raise AssertionError("the command started")

    monkeypatch.setattr(cli, "run_command", started)
    monkeypatch.setattr(errors, "run_command", started)


def refusal(capsys, main, argv):
    """The one stderr line of a usage error (exit 2)."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 1, err
    return err[0]


@pytest.mark.parametrize("main,prog,argv,flag,accepted", CASES, ids=[" ".join(c[2])[:60] for c in CASES])
def test_every_number_out_of_range_is_one_line_naming_the_flag_and_the_range(capsys, no_work, main, prog, argv,
                                                                             flag, accepted):
    line = refusal(capsys, main, argv)
    assert line.startswith(f"{prog}: error: argument {flag}") and accepted in line, line
    assert "Traceback" not in line and "random_state" not in line


@pytest.mark.parametrize("key,low,high", [
    ("epochs", 1, 2**31 - 1), ("seed", 0, 2**32 - 1), ("rounds", 1, 10_000), ("warmup", 0, 10_000),
    ("trials", 1, 10_000), ("threads", 1, options.thread_limit()), ("image_side", 1, 4096), ("opset", 13, 18),
])
def test_the_ends_of_a_range_are_accepted_and_one_past_them_refused(key, low, high):
    import argparse

    parse = options.bounded(key)
    assert parse(str(low)) == low and parse(str(high)) == high
    for outside in (low - 1, high + 1):
        with pytest.raises(argparse.ArgumentTypeError, match=f"from {low} to {high}"):
            parse(str(outside))
        with pytest.raises(ValueError, match=f"`{key}` must be an integer from {low} to {high}"):
            options.check_bounded(key, outside)
    for wrong in (True, 1.0, "5", None):
        with pytest.raises(ValueError, match=f"`{key}`"):
            options.check_bounded(key, wrong)


def test_the_largest_accepted_values_reach_the_command(monkeypatch):
    seen = []
    monkeypatch.setattr(cli, "run_command", lambda prog, function, args: seen.append(args) or 0)
    assert cli.main(["train", "--epochs", str(2**31 - 1), "--seed", str(2**32 - 1), "--milestones", "0.5",
                     "--warmup-epochs", "0"]) == 0
    assert cli.main(["compare", "--target", "1", "--seeds", "0", str(2**32 - 1)]) == 0
    assert cli.main(["bench", "--rounds", "10000", "--steps", "1"]) == 0
    train, compare, bench = seen
    assert train.epochs == 2**31 - 1 and train.seed == 2**32 - 1 and train.milestones == [0.5]
    assert compare.target == 1.0 and compare.seeds == [0, 2**32 - 1] and bench.rounds == 10_000


def test_the_table_agrees_with_the_library_it_guards():
    """The parser's ranges are the library's: a value the parser accepts, training accepts, and the reverse."""
    from export import core
    from lacnn_zoo.data import splits
    from lacnn_zoo.training.recipes import resolve_recipe

    assert options.IMAGE_SIDE_MAX == splits.MAX_IMAGE_SIDE and options.OPSETS == (core.MIN_OPSET, core.MAX_OPSET)
    recipe_keys = {"learning_rate": "learning_rate", "momentum": "momentum", "weight_decay": "weight_decay",
                   "decay_factor": "decay_factor", "label_smoothing": "label_smoothing", "clipnorm": "clipnorm",
                   "mixup": "alpha", "cutmix": "alpha", "random_erasing": "probability"}
    for option, key in recipe_keys.items():
        for value in (-1.0, 0.0, 0.5, 1.0, 2.0, float("inf"), float("nan")):
            try:
                resolve_recipe(**{option: value})
                library = True
            except ValueError:
                library = False
            assert options.within(key, value) == library, (option, value)


def test_usage_errors_of_every_parser_are_one_line(capsys):
    line = refusal(capsys, cli.main, ["bench", "--no-such-option"])
    assert line.startswith("lacnn-zoo: error: unrecognized arguments: --no-such-option")
    line = refusal(capsys, export_main.main, ["m.keras"])
    assert line == "python -m export: error: the following arguments are required: --out"
