"""The study's printed summary, study.md and the files written at the end."""

import os

from lacnn_zoo.experiments.study.plots import (
    plot_attention,
    plot_gradient_ratio,
    plot_robustness,
    plot_test_accuracy,
    plot_training_curves,
)
from lacnn_zoo.io import atomic_path, write_csv, write_json

# ---------------------------------------------------------------------------------------------------- outputs

def write_outputs(out_dir, summary):
    write_json(os.path.join(out_dir, "study.json"), summary)

    with atomic_path(os.path.join(out_dir, "study.md")) as tmp, open(tmp, "w") as f:
        f.write(markdown_report(summary))
    for name in ("accuracy", "gradients", "attention", "robustness"):
        if summary[name]:
            write_csv(summary[name], os.path.join(out_dir, f"{name}.csv"))
    config = summary["config"]
    plot_training_curves(out_dir, config, os.path.join(out_dir, "training_curves.png"))
    plot_test_accuracy(summary, os.path.join(out_dir, "test_accuracy.png"))
    plot_gradient_ratio(summary, os.path.join(out_dir, "gradient_ratio.png"))
    plot_attention(out_dir, config, os.path.join(out_dir, "attention.png"))
    plot_robustness(out_dir, config, os.path.join(out_dir, "robustness.png"))


def _fmt(mean, std, digits=3):
    return "-" if mean is None else f"{mean:.{digits}f} ± {std:.{digits}f}"


def _p(p):
    return "n/a" if p is None else (f"{p:.3f}" if p >= 0.001 else "<0.001")


def print_summary(summary, file=None):
    """Print the study's tables (accuracy, gradient ratios and lesion drops, attention) and its verdicts as text.

    Args:
        summary: the study's summary dict (`depth_study`'s result).
        file: the text stream to print to; None means `sys.stdout`.
    """
    import sys

    file = file or sys.stdout
    print(f"{'D':>3} {'variant':<24} {'convs':>5} {'test acc':>15} {'diff vs plain [95% CI]':>30} {'p':>6} "
          f"{'train acc':>15} {'p':>6}", file=file)
    for r in summary["accuracy"]:
        diff = "" if r["test_acc_diff_vs_plain"] is None else (
            f"{r['test_acc_diff_vs_plain']:+.3f}" + ("" if r["test_acc_ci_low"] is None else
                                                     f" [{r['test_acc_ci_low']:+.3f}, {r['test_acc_ci_high']:+.3f}]"))
        print(f"{r['depth']:>3} {r['variant']:<24} {r['conv_layers']:>5} "
              f"{_fmt(r['test_acc_mean'], r['test_acc_std']):>15} "
              f"{diff:>30} {_p(r['test_acc_p_vs_plain']) if r['variant'] != 'plain' else '':>6} "
              f"{_fmt(r['train_acc_mean'], r['train_acc_std']):>15} "
              f"{_p(r['train_acc_p_vs_plain']) if r['variant'] != 'plain' else '':>6}", file=file)
    print(f"\n{'D':>3} {'variant':<24} {'log10 grad first/last: init':>28} {'epoch 1':>15} "
          f"{'drop zero':>15} {'drop reinit':>15}", file=file)
    for g, r in zip(summary["gradients"], summary["robustness"]):
        print(f"{g['depth']:>3} {g['variant']:<24} {_fmt(g['log10_ratio_e0_mean'], g['log10_ratio_e0_std'], 2):>28} "
              f"{_fmt(g.get('log10_ratio_e1_mean'), g.get('log10_ratio_e1_std'), 2):>15} "
              f"{_fmt(r['zero_drop_mean'], r['zero_drop_std']):>15} "
              f"{_fmt(r['reinit_drop_mean'], r['reinit_drop_std']):>15}",
              file=file)
    print("\nattention argmax layer of w_e - w_0 per epoch (seeds separated by ';'):", file=file)
    for a in summary["attention"]:
        print(f"{a['depth']:>3} {a['variant']:<24} n={a['layers']:<3} {a['seeds_agreeing']}/{a['seeds']} agree: "
              f"{a['argmax_by_epoch']}", file=file)
    print("\npredictions:", file=file)
    for name, v in summary["predictions"].items():
        print(f"  {name}: {v['verdict']}", file=file)


def _ci(row, key):
    if row.get(f"{key}_diff_vs_plain") is None:
        return "-"
    text = f"{row[f'{key}_diff_vs_plain']:+.3f}"
    if row.get(f"{key}_ci_low") is not None:
        text += f" [{row[f'{key}_ci_low']:+.3f}, {row[f'{key}_ci_high']:+.3f}]"
    return f"{text}, p {_p(row[f'{key}_p_vs_plain'])}"


def markdown_report(summary):
    """The study's tables as Markdown (what `study.md` holds).

    Args:
        summary: the study's summary dict (`depth_study`'s result, with its `config` and `wall_time_s`).

    Returns:
        The Markdown text, a str ending with a newline.
    """
    config = summary["config"]
    n = len(config["seeds"])
    lines = [f"Depth study: {', '.join(config['variants'])} at depths {config['depths']}, seeds {config['seeds']}, "
             f"{config['epochs']} epochs, widths {config['widths']}, data set {config['dataset']}; "
             f"wall time {summary['wall_time_s'] / 60:.1f} min. Mean ± sample std over {n} seeds; differences "
             f"against the plain backbone at the same depth with Welch's 95% interval and two-sided p.", "",
             "| D | variant | convs | params | train acc (last epoch) | vs plain | test acc | vs plain |",
             "|---:|---|---:|---:|---:|---|---:|---|"]
    for r in summary["accuracy"]:
        lines.append(f"| {r['depth']} | {r['variant']} | {r['conv_layers']} | {r['params']:,} | "
                     f"{_fmt(r['train_acc_mean'], r['train_acc_std'])} | {_ci(r, 'train_acc')} | "
                     f"{_fmt(r['test_acc_mean'], r['test_acc_std'])} | {_ci(r, 'test_acc')} |")
    epochs = sorted(int(k.split("_e")[1].split("_")[0]) for k in summary["gradients"][0] if k.endswith("_mean"))
    lines += ["", "log10(first / last backbone layer gradient norm); 0 = no dilution, -1 = the first layer gets a "
              "tenth of the last layer's gradient.", "",
              "| D | variant | " + " | ".join("init" if e == 0 else f"epoch {e}" for e in epochs)
              + " | p vs plain (init) | p vs plain (epoch 1) |",
              "|---:|---|" + "---:|" * len(epochs) + "---:|---:|"]
    for g in summary["gradients"]:
        cells = " | ".join(_fmt(g[f"log10_ratio_e{e}_mean"], g[f"log10_ratio_e{e}_std"], 2) for e in epochs)
        p1 = _p(g.get("log10_ratio_e1_p_vs_plain")) if g["variant"] != "plain" else "-"
        p0 = _p(g["log10_ratio_e0_p_vs_plain"]) if g["variant"] != "plain" else "-"
        lines.append(f"| {g['depth']} | {g['variant']} | {cells} | {p0} | {p1} |")
    if summary["attention"]:
        lines += ["", "Argmax layer of the attention shift w_e - w_0 after epochs 1, 2, ... (one group per seed).", "",
                  "| D | mechanism | layers | argmax by epoch, per seed | seeds agreeing | verdict |",
                  "|---:|---|---:|---|---:|---|"]
        for a in summary["attention"]:
            lines.append(f"| {a['depth']} | {a['variant']} | {a['layers']} | {a['argmax_by_epoch']} | "
                         f"{a['seeds_agreeing']}/{a['seeds']} | {'held' if a['held'] else 'did not hold'} |")
    lines += ["", "Test-accuracy drop when one backbone layer is lesioned, averaged over the layers (mean ± std over "
              "seeds); p: Welch against the plain backbone.", "",
              "| D | variant | clean | drop, output zeroed | p | drop, weights re-initialised | p | drop, residual "
              "branch zeroed |", "|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in summary["robustness"]:
        plain = r["variant"] == "plain"
        lines.append(f"| {r['depth']} | {r['variant']} | {r['clean_mean']:.3f} | "
                     f"{_fmt(r['zero_drop_mean'], r['zero_drop_std'])} | "
                     f"{'-' if plain else _p(r['zero_drop_p_vs_plain'])} | "
                     f"{_fmt(r['reinit_drop_mean'], r['reinit_drop_std'])} | "
                     f"{'-' if plain else _p(r['reinit_drop_p_vs_plain'])} | "
                     f"{_fmt(r['zero_branch_drop_mean'], r['zero_branch_drop_std'])} |")
    lines += ["", "Predictions (criteria in study.json):", ""]
    for name, v in summary["predictions"].items():
        verdict = v["verdict"]
        if isinstance(verdict, dict):
            verdict = "; ".join(f"{k}: {x if isinstance(x, str) else ', '.join(f'{a} {b}' for a, b in x.items())}"
                                for k, x in verdict.items())
        evidence = v.get("evidence")
        extra = ""
        if isinstance(evidence, dict) and evidence.get("diff") is not None:
            extra = f" (difference {evidence['diff']:+.3f}" + (
                f", 95% CI [{evidence['ci_low']:+.3f}, {evidence['ci_high']:+.3f}], p {_p(evidence['p'])})"
                if evidence.get("ci_low") is not None else ", no test: too few values or no spread)")
        lines.append(f"- {name}: {verdict}{extra}")
    return "\n".join(lines) + "\n"
