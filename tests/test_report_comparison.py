"""`lacnn-zoo report RUN_A RUN_B ... --out DIR` and `lacnn-zoo report COMPARE_FOLDER`: one page comparing runs.
The runs are written by hand (run.json, metrics.json, history.csv): the comparison reads only those files."""

import html
import json
import math
import os
import re

import numpy as np
import pytest
from scipy import stats

from lacnn_zoo import cli
from lacnn_zoo.experiments.report import report

RAW, EMA = [0.91, 0.93, 0.92], [0.95, 0.94, 0.965]


def write_run(folder, seed, accuracy, *, ema=False, model="plain_cnn_tiny"):
    os.makedirs(folder)
    config = {"model": model, "dataset": "digits", "seed": seed, "ema": ema, "ema_decay": 0.99, "epochs": 3,
              "batch_size": 64, "learning_rate": 0.003, "optimizer": "adamw", "weight_decay": 1e-4,
              "schedule": "cosine", "precision": "float32", "overrides": {}}
    with open(os.path.join(folder, "run.json"), "w") as f:
        json.dump(config, f)
    with open(os.path.join(folder, "metrics.json"), "w") as f:
        json.dump({"test_accuracy": accuracy, "test_loss": 1 - accuracy, "params": 24282, "family": "plain"}, f)
    with open(os.path.join(folder, "history.csv"), "w") as f:
        f.write("epoch,accuracy,loss,val_accuracy,val_loss" + (",val_ema_accuracy,val_ema_loss\n" if ema else "\n"))
        for epoch in range(3):  # with --ema, the averaged weights validate best at the middle epoch, not the last
            val = accuracy - 0.05 * (2 - epoch)
            f.write(f"{epoch},{accuracy - 0.1 * (2 - epoch)},{0.5},{val},{0.4}"
                    + (f",{val + (0.2 if epoch == 1 else -0.01)},0.3\n" if ema else "\n"))


@pytest.fixture
def runs(tmp_path):
    """Three seeds trained raw and three with --ema, as `lacnn-zoo compare`'s layout (`<name>/seed<n>`)."""
    root = tmp_path / "runs"
    for seed, accuracy in enumerate(RAW):
        write_run(str(root / "raw" / f"seed{seed}"), seed, accuracy)
    for seed, accuracy in enumerate(EMA):
        write_run(str(root / "ema" / f"seed{seed}"), seed, accuracy, ema=True)
    return root


def _cli(capsys, *args):
    code = cli.main(["report", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err.strip().splitlines()


def _text(page):
    return html.unescape(re.sub(r"<[^>]+>", " ", open(page, encoding="utf-8").read()))


def _welch(a, b):
    """Welch's test from its equations: the difference of the means, its standard error, the
    Welch-Satterthwaite degrees of freedom, the two-sided p-value."""
    a, b = np.asarray(a), np.asarray(b)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    t = (a.mean() - b.mean()) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    return a.mean() - b.mean(), t, df, 2 * stats.t.sf(abs(t), df)


def test_runs_that_differ_by_ema_over_seeds(runs, tmp_path, capsys):
    own = runs / "raw" / "seed0" / "report"  # one run already has its page: the comparison links it
    own.mkdir()
    (own / "report.html").write_text("<html></html>")
    paths = [runs / "raw" / f"seed{s}" for s in range(3)] + [runs / "ema" / f"seed{s}" for s in range(3)]
    out = tmp_path / "comparison"
    code, printed, err = _cli(capsys, *paths, "--out", out)
    assert code == 0, err
    numbers = json.load(open(out / "report.json"))
    page_html = open(out / "report.html", encoding="utf-8").read()
    # What differs is the EMA and the seed, highlighted; nothing else is.
    assert numbers["differences"] == ["EMA of the weights", "seed"]
    assert page_html.count('<tr class="differs">') == 2
    # Two groups (runs whose run.json differ only by the seed), each with mean, sample std and Student's t CI.
    groups = numbers["groups"]
    assert [g["runs"] for g in groups] == [[f"raw/seed{s}" for s in range(3)], [f"ema/seed{s}" for s in range(3)]]
    for group, values in zip(groups, (RAW, EMA)):
        mean, std = np.mean(values), np.std(values, ddof=1)
        half = stats.t.ppf(0.975, len(values) - 1) * std / math.sqrt(len(values))
        assert (group["mean"], group["std"]) == pytest.approx((mean, std))
        assert (group["ci_low"], group["ci_high"]) == pytest.approx((mean - half, mean + half))
    assert [g["group"] for g in groups] == ["EMA of the weights: off", "EMA of the weights: on, decay 0.99"]
    diff, t, df, p = _welch(RAW, EMA)
    assert (numbers["welch"]["diff"], numbers["welch"]["t"], numbers["welch"]["df"], numbers["welch"]["p"]) == \
        pytest.approx((diff, t, df, p))
    said = re.sub(r"<[^>]+>", " ", page_html)
    assert f"minus (EMA of the weights: off): {-diff:+.4f}" in said and "Significant at 0.05" in said
    low, high = stats.t.interval(0.95, df, loc=-diff, scale=abs(diff / t))  # the CI of ema minus raw, low end first
    assert f"95% CI {low:+.4f} to {high:+.4f}" in said
    # Metrics side by side, each run's own page linked where it has one.
    assert [m["test_accuracy"] for m in numbers["metrics"]] == RAW + EMA
    assert [m["best_weights"] for m in numbers["metrics"]] == ["raw"] * 3 + ["averaged (EMA)"] * 3  # epoch 2's
    link = re.search(r'<a href="([^"]+)">report</a>', page_html).group(1)
    assert os.path.samefile(out / link, own / "report.html") and page_html.count("no page yet") == 5
    assert os.path.isfile(out / "comparison_curves.png")
    from test_report import renders_in_a_browser

    renders_in_a_browser(str(out / "report.html"), tmp_path, images=1)


def test_too_few_seeds_is_said_not_shown(runs, tmp_path):
    """2 seeds on one side and 3 on the other: the smaller side decides, not shown; a group of one run has no
    interval and no test."""
    paths = [runs / "raw" / "seed0", runs / "raw" / "seed1", *(runs / "ema" / f"seed{s}" for s in range(3))]
    page = report(paths, out=tmp_path / "two", log=lambda *a: None)
    html = re.sub(r"<[^>]+>", " ", open(page, encoding="utf-8").read())
    assert "too few degrees of freedom to tell: not shown" in html and "Significant" not in html
    page = report(paths[:3], out=tmp_path / "one", log=lambda *a: None)
    groups = json.load(open(tmp_path / "one" / "report.json"))["groups"]
    assert [g["n"] for g in groups] == [2, 1] and groups[1]["ci_low"] is None
    assert "Welch's test is undefined here" in _text(page)


def test_a_compare_folder_reports_its_runs(runs, capsys):
    with open(runs / "compare.json", "w") as f:
        json.dump({"models": [], "seeds": [0, 1, 2]}, f)
    (runs / "raw" / "seed0" / "report").mkdir()  # a run's own report folder is not a run
    write_run(str(runs / "raw" / "seed0" / "inner"), 5, 0.5)  # nor anything inside a run
    code, _, err = _cli(capsys, runs)
    assert code == 0, err
    numbers = json.load(open(runs / "report" / "report.json"))
    assert numbers["names"] == [f"{kind}/seed{s}" for kind in ("ema", "raw") for s in range(3)]
    assert "<title>lacnn-zoo compare: runs</title>" in open(runs / "report" / "report.html").read()


@pytest.mark.parametrize("extra, words", [
    ([], "--out is needed to compare several runs"),
    (["--out", "OUT", "--examples", "4"], "--examples cannot take effect: a comparison"),
    (["--out", "OUT", "--limit", "4"], "--limit cannot take effect: a comparison"),
    (["--out", "OUT", "--download"], "--download cannot take effect: a comparison"),
    (["SAME_OTHERWISE", "--out", "OUT"], "the same run folder is given twice"),
    (["NOT_A_RUN", "--out", "OUT"], "is not a run folder of `lacnn-zoo train`"),
    (["SAME", "--out", "OUT"], "the same run folder is given twice"),
])
def test_what_cannot_be_compared_is_one_line(runs, tmp_path, capsys, extra, words):
    (tmp_path / "NOT_A_RUN").mkdir()
    spelled = {"OUT": str(tmp_path / "OUT"), "NOT_A_RUN": str(tmp_path / "NOT_A_RUN"),
               "SAME": str(runs / "raw" / "seed0"), "SAME_OTHERWISE": str(runs / "raw" / ".." / "raw" / "seed0")}
    extra = [spelled.get(e, e) for e in extra]
    code, _, err = _cli(capsys, runs / "raw" / "seed0", runs / "ema" / "seed0", *extra)
    assert code == 2 and len(err) == 1 and words in err[0], err
    assert not (tmp_path / "OUT").exists()


def test_a_compare_folder_of_one_run_is_one_line(runs, capsys):
    compare = runs / "raw"
    (compare / "seed1").rename(runs / "elsewhere1")
    (compare / "seed2").rename(runs / "elsewhere2")
    with open(compare / "compare.json", "w") as f:
        json.dump({"models": []}, f)
    code, _, err = _cli(capsys, compare)
    assert code == 2 and len(err) == 1 and "holding 1 run folder(s); a comparison needs two or more" in err[0], err
