"""`lacnn-zoo report RUN_A RUN_B ... --out DIR` and `lacnn-zoo report COMPARE_FOLDER`: one page comparing runs.

It reads the runs' files only (run.json, metrics.json, history.csv; no test split is scored): their validation
curves overlaid, their configurations side by side with the rows that differ highlighted, their metrics side by
side, and, for runs that differ only by their seed, each group's mean ± std with a 95% confidence interval of the
mean and, between two groups, Welch's test: the everyday question "did `--ema` (or a mechanism, or a backbone)
help, over seeds?". Each run's own page is linked when it has one.
"""

import os

from lacnn_zoo.experiments.report import configuration, figures
from lacnn_zoo.experiments.report.epochs import _best_epoch, _history, _offer
from lacnn_zoo.experiments.report.page import Link, Page
from lacnn_zoo.experiments.statistics import ALPHA, CONFIDENCE, MIN_SEEDS, mean_interval, welch
from lacnn_zoo.io import DamagedFileError, damaged, read_json
from lacnn_zoo.training.report_folder import PAGE
from lacnn_zoo.training.run_folder import REPORT, RunFolder

COMPARE_SUMMARY = "compare.json"  # what `lacnn-zoo compare` writes beside its runs
# run.json keys that say where or how a run was started, not what it was: not differences between runs.
_NOT_THE_RUN = frozenset({"seed"})
# The configuration table's rows that are results, not configuration: the metrics table shows them.
_RESULTS = ("test accuracy", "test loss", "best validation accuracy (epoch, from 1)")


def is_compare_folder(path):
    """Whether `path` is the output folder of `lacnn-zoo compare` (its compare.json beside run folders)."""
    return os.path.isfile(os.path.join(path, COMPARE_SUMMARY))


def compare_runs(path):
    """The run folders under a `lacnn-zoo compare` folder (`<model>/seed<n>`), sorted; DamagedFileError when its
    compare.json is not the zoo's."""
    summary = os.path.join(path, COMPARE_SUMMARY)
    try:
        if not isinstance(read_json(summary), dict):
            raise ValueError("not a JSON object")
    except (ValueError, OSError) as e:
        raise damaged(summary, f"it is not the summary `lacnn-zoo compare` writes ({e})") from None
    runs = []
    for root, dirs, _ in os.walk(path):
        dirs[:] = sorted(d for d in dirs if d != REPORT and not d.startswith("."))
        if root != path and RunFolder(root).is_run():
            runs.append(root)
            dirs[:] = []  # a run's own subfolders (its report, its logs) are not runs
    return runs


def labels(paths):
    """Short unique names of two or more runs: their paths relative to the folder they share."""
    absolute = [os.path.abspath(p) for p in paths]
    common = os.path.commonpath(absolute)
    names = [os.path.relpath(p, common) if p != common else os.path.basename(p) for p in absolute]
    return names if len(set(names)) == len(names) else absolute


def _seed_groups(configs):
    """Runs whose run.json differ only by their seed, as lists of run indices, in the order they first appear."""
    groups = {}
    for i, config in enumerate(configs):
        key = repr(sorted((k, repr(v)) for k, v in config.items() if k not in _NOT_THE_RUN))
        groups.setdefault(key, []).append(i)
    return list(groups.values())


def comparison_page(paths, out, *, title=None, log=print):
    """The comparison page of the run folders `paths`, its figure written into `out`.

    Args:
        paths: two or more run folders of `lacnn-zoo train` (or of `lacnn-zoo compare`).
        out: the folder the page and its figure go into.
        title: the page's title (default: "Comparison of N runs").
        log: where progress lines go.

    Returns:
        A `Page` (its `numbers` are report.json's).
    """
    names = labels(paths)
    page = Page(title or f"Comparison of {len(paths)} runs", "Runs: " + ", ".join(names))
    configs, metrics, histories = [], [], []
    for path in paths:
        folder = RunFolder(path)
        configs.append(folder.config())  # damaged: refused before any work
        try:
            metrics.append(folder.metrics(missing={}))
        except DamagedFileError as e:
            metrics.append({})
            page.left_out(f"The test metrics of {names[len(metrics) - 1]}", str(e).rstrip("."))
        rows, unusable = _history(folder)
        if unusable:
            page.left_out(f"The curves of {names[len(histories)]}", unusable)
        histories.append(rows)
    log(f"report: comparing {len(paths)} runs ...")
    bests = [_best_epoch(history) for history in histories]  # 0-based, None without a validation accuracy
    offers = [None if best is None else _offer(history[best]) for best, history in zip(bests, histories)]
    tables = [dict(configuration.rows(config, metric, epochs_run=len(history),
                                      best_epoch=None if best is None else best + 1,
                                      best_accuracy=None if offer is None else offer[0]))
              for config, metric, history, best, offer in zip(configs, metrics, histories, bests, offers)]
    what = [w for w in tables[0] if w not in _RESULTS and any(t.get(w) is not None for t in tables)]
    differ = [w for w in what if len({repr(t.get(w)) for t in tables}) > 1]
    groups = _seed_groups(configs)
    _seeds_section(page, names, groups, configs, metrics, tables, [w for w in differ if w != "seed"])

    page.heading("Validation curves")
    group_of = {i: g for g, group in enumerate(groups) for i in group}
    path = os.path.join(out, "comparison_curves.png")
    figures.compared_curves(names, histories, path, "validation accuracy and loss per epoch",
                            colours=[group_of[i] for i in range(len(names))])
    page.figure(path, "validation curves of the runs")
    if len(set(group_of.values())) < len(names):
        page.text("Runs that differ only by their seed share a colour.", kind="note")

    page.heading("Configurations")
    if differ:
        page.text("Where the runs differ:")
        page.table(["", *names], [[w, *(t.get(w) for t in tables)] for w in differ],
                   highlight=range(len(differ)))
    page.text("The same in every run:" if differ else "The runs' configurations are the same:")
    page.table(None, [[w, tables[0].get(w)] for w in what if w not in differ])
    page.numbers.update(runs=[os.path.abspath(p) for p in paths], names=names, differences=differ)

    page.heading("Metrics")
    rows, numbers = [], []
    for name, path, metric, table, offer in zip(names, paths, metrics, tables, offers):
        own = os.path.join(path, REPORT, PAGE)
        link = Link(os.path.relpath(own, out), "report") if os.path.isfile(own) else "no page yet"
        weights = None if offer is None else "averaged (EMA)" if offer[2] == "ema" else "raw"
        rows.append([name, metric.get("test_accuracy"), metric.get("test_loss"),
                     table.get("best validation accuracy (epoch, from 1)"), weights, metric.get("params"), link])
        numbers.append({"name": name, "test_accuracy": metric.get("test_accuracy"),
                        "test_loss": metric.get("test_loss"), "best_weights": weights,
                        "own_page": own if os.path.isfile(own) else None})
    page.table(["run", "test accuracy", "test loss", "best validation accuracy (epoch)", "best.keras weights",
                "parameters", "its page"], rows)
    page.text("best.keras weights: the weights the test metrics are of, those of the best epoch: with --ema the "
              "better of the raw and the averaged weights on the validation split.", kind="note")
    page.numbers["metrics"] = numbers
    if any(n["own_page"] is None for n in numbers):
        page.text("A run without a page gets one from `lacnn-zoo report RUN`.", kind="note")

    return page


def _group_label(number, group, tables, differ):
    """What sets a group apart: its values of the rows that differ between the runs (seed aside)."""
    said = "; ".join(f"{w}: {_value(tables[group[0]].get(w))}" for w in differ)
    return said or f"group {number}"


def _value(value):
    return "-" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


def _seeds_section(page, names, groups, configs, metrics, tables, differ):
    page.heading("Over seeds")
    if all(len(g) == 1 for g in groups):
        page.text("No two runs differ only by their seed: there is no spread to show (train the same "
                  "configuration with several --seed values, or use `lacnn-zoo compare --seeds`).")
        page.numbers["groups"] = []
        return
    rows, summary = [], []
    for number, group in enumerate(groups, start=1):
        values = [metrics[i].get("test_accuracy") for i in group]
        values = [v for v in values if v is not None]
        mean, std, low, high = mean_interval(values) if values else (None, None, None, None)
        seeds = [configs[i].get("seed") for i in group]
        label = _group_label(number, group, tables, differ)
        rows.append([label, ", ".join(names[i] for i in group), ", ".join(map(str, seeds)), len(values), mean, std,
                     f"{low:.4f} to {high:.4f}" if low is not None else "n/a (one run)"])
        summary.append({"group": label, "runs": [names[i] for i in group], "seeds": seeds, "n": len(values),
                        "mean": mean, "std": std, "ci_low": low, "ci_high": high, "values": values})
    page.table(["group", "runs", "seeds", "n", "mean test accuracy", "std", f"{CONFIDENCE:.0%} CI of the mean"],
               rows)
    page.text("Groups: runs whose run.json differ only by the seed. std: the sample standard deviation; the "
              "interval is Student's t over the group's runs.", kind="note")
    page.numbers["groups"] = summary
    if len(summary) != 2:
        return
    a, b = summary
    if not (a["values"] and b["values"]):
        return
    test = welch(a["values"], b["values"])
    page.numbers["welch"] = test
    n = min(a["n"], b["n"])
    said = f"Mean test accuracy of ({b['group']}) minus ({a['group']}): {-test['diff']:+.4f}"
    if test["p"] is None:
        said += ("; Welch's test is undefined here (fewer than 2 runs in a group, or no spread in either), so the "
                 "difference is not shown to be real.")
    else:
        said += (f", {CONFIDENCE:.0%} CI {-test['ci_high']:+.4f} to {-test['ci_low']:+.4f} (Welch's t = "
                 f"{-test['t']:.2f}, df {test['df']:.1f}, p = {test['p']:.3g}). ")
        if n < MIN_SEEDS:
            said += (f"With {n} runs in a group the test has too few degrees of freedom to tell: not shown "
                     f"(>= {MIN_SEEDS} seeds a group).")
        elif test["p"] < ALPHA:
            said += f"Significant at {ALPHA}: over these seeds the difference is unlikely to be chance."
        else:
            said += f"Not significant at {ALPHA}: these seeds do not show a difference."
    page.text(said)
