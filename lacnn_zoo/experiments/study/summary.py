"""The study's tables and verdicts, from the runs' files: accuracy, gradient ratios, attention, robustness."""

import math
import os

import numpy as np

from lacnn_zoo.experiments.compare import backbone_profile, read_csv
from lacnn_zoo.experiments.statistics import mean_std, verdict, welch
from lacnn_zoo.experiments.study.layout import (
    CRITERIA,
    GRAD_EPOCHS,
    attention_rows,
    conv_layers,
    history,
    lesion_path,
    row_of,
    run_dir,
)
from lacnn_zoo.experiments.study.lesions import mean_drop
from lacnn_zoo.io import read_json
from lacnn_zoo.options import VARIANTS  # variant -> (registered model, fixed overrides, family)
from lacnn_zoo.training.run_folder import RunFolder


def _test_verdict(test, sign):
    return verdict(test["p"], test["diff"], min(test["n_a"], test["n_b"]), sign)


# ---------------------------------------------------------------------------------------------------- summary

def _grad_ratio(out_dir, variant, depth, seed, epoch):
    path = os.path.join(run_dir(out_dir, variant, depth, seed), "grad_norms.csv")
    profile = backbone_profile(read_csv(path), epoch) if os.path.exists(path) else []
    if len(profile) < 2 or profile[-1] <= 0 or profile[0] <= 0:
        return None
    return math.log10(profile[0] / profile[-1])


def climbing_criterion(epochs, weights):
    """The section-4 criterion of one seed (see CRITERIA): argmax of the shift from epoch 0, lowest third first,
    then non-decreasing.  Returns (agrees, [a_1, ..., a_E] as 1-based layer indices).

    Args:
        epochs: the epochs of the attention rows, ascending (epoch 0, before training, first).
        weights: a NumPy array `[epoch, layer]` of the per-layer attention, one row per epoch.

    Returns:
        `(agrees, argmax)`: a bool and the list of 1-based layer indices; `(None, [])` when the first row is not
        epoch 0 or there is no later epoch.
    """
    if epochs[0] != 0 or len(epochs) < 2:
        return None, []
    shift = weights[1:] - weights[0]
    argmax = [int(np.argmax(s)) + 1 for s in shift]
    n = weights.shape[1]
    agrees = argmax[0] <= math.ceil(n / 3) and all(b >= a for a, b in zip(argmax, argmax[1:]))
    return bool(agrees), argmax


def summarise(out_dir, variants, depths, seeds, epochs):
    """The study's tables and verdicts, read from the run folders and lesion files in `out_dir`.

    Args:
        out_dir: the study's folder.
        variants: names of `VARIANTS` that were run.
        depths: the depths that were run, ascending.
        seeds: the seeds that were run.
        epochs: epochs per run (the gradient ratios are read at epoch 0 and the `GRAD_EPOCHS` up to it).

    Returns:
        A dict of the tables "accuracy", "gradients", "attention" and "robustness" (lists of rows, one per
        depth and variant), "predictions" (`verdicts`) and "criteria" (`CRITERIA`).
    """
    accuracy, gradients, attention, robustness = [], [], [], []
    grad_epochs = [0, *[e for e in GRAD_EPOCHS if e <= epochs]]
    for depth in depths:
        plain = {}
        for variant in variants:
            histories = [history(out_dir, variant, depth, s) for s in seeds]
            metrics = [RunFolder(run_dir(out_dir, variant, depth, s)).metrics() for s in seeds]
            test = [m["test_accuracy"] for m in metrics]
            train_acc = [float(h[-1]["accuracy"]) for h in histories]
            train_loss = [float(h[-1]["loss"]) for h in histories]
            lesions = [read_json(lesion_path(out_dir, variant, depth, s)) for s in seeds]
            drops = {k: [mean_drop(les, k) for les in lesions] for k in ("zero", "reinit", "zero_branch")}
            ratios = {e: [_grad_ratio(out_dir, variant, depth, s, e) for s in seeds] for e in grad_epochs}
            if variant == "plain":
                plain = {"test": test, "train_acc": train_acc, "drops": drops, "ratios": ratios}
            vs = {"test_acc": welch(test, plain["test"]), "train_acc": welch(train_acc, plain["train_acc"])}
            row = {"depth": depth, "variant": variant, "family": VARIANTS[variant][2],
                   "conv_layers": conv_layers(variant, depth), "params": metrics[0]["params"], "seeds": len(seeds)}
            for key, values in (("test_acc", test), ("train_acc", train_acc), ("train_loss", train_loss)):
                row[f"{key}_mean"], row[f"{key}_std"] = mean_std(values)
                row[f"{key}_values"] = values
            for key, test_ in vs.items():
                row[f"{key}_diff_vs_plain"] = test_["diff"] if variant != "plain" else None
                row[f"{key}_ci_low"] = test_["ci_low"] if variant != "plain" else None
                row[f"{key}_ci_high"] = test_["ci_high"] if variant != "plain" else None
                row[f"{key}_p_vs_plain"] = test_["p"] if variant != "plain" else None
            row["time_per_epoch_s"] = float(np.mean([m["time_per_epoch_s"] for m in metrics]))
            accuracy.append(row)

            grow = {"depth": depth, "variant": variant}
            for e in grad_epochs:
                grow[f"log10_ratio_e{e}_mean"], grow[f"log10_ratio_e{e}_std"] = mean_std(ratios[e])
                grow[f"log10_ratio_e{e}_values"] = ratios[e]
                test_ = welch([r for r in ratios[e] if r is not None],
                              [r for r in plain["ratios"][e] if r is not None])
                grow[f"log10_ratio_e{e}_p_vs_plain"] = test_["p"] if variant != "plain" else None
            gradients.append(grow)

            rrow = {"depth": depth, "variant": variant, "family": VARIANTS[variant][2],
                    "clean_mean": mean_std([les["clean"] for les in lesions])[0], "units": len(lesions[0]["units"])}
            for kind in ("zero", "reinit", "zero_branch"):
                values = [d for d in drops[kind] if d is not None]
                rrow[f"{kind}_drop_mean"], rrow[f"{kind}_drop_std"] = mean_std(values)
                if kind != "zero_branch":
                    test_ = welch(values, [d for d in plain["drops"][kind] if d is not None])
                    rrow[f"{kind}_drop_diff_vs_plain"] = test_["diff"] if variant != "plain" else None
                    rrow[f"{kind}_drop_p_vs_plain"] = test_["p"] if variant != "plain" else None
            robustness.append(rrow)

            if VARIANTS[variant][2] == "layer_attended":
                per_seed = []
                for s in seeds:
                    ep, w = attention_rows(out_dir, variant, depth, s)
                    agrees, argmax = climbing_criterion(ep, w)
                    per_seed.append({"seed": s, "agrees": agrees, "argmax_by_epoch": argmax, "layers": w.shape[1]})
                votes = sum(bool(p["agrees"]) for p in per_seed)
                attention.append({"depth": depth, "variant": variant, "layers": per_seed[0]["layers"],
                                  "seeds_agreeing": votes, "seeds": len(seeds),
                                  "argmax_by_epoch": "; ".join("-".join(map(str, p["argmax_by_epoch"]))
                                                               for p in per_seed),
                                  "held": votes >= (len(seeds) // 2 + 1)})
    return {"accuracy": accuracy, "gradients": gradients, "attention": attention, "robustness": robustness,
            "predictions": verdicts(accuracy, gradients, attention, robustness, depths, variants),
            "criteria": CRITERIA}


def verdicts(accuracy, gradients, attention, robustness, depths, variants):
    """Apply CRITERIA to the tables: {prediction: {"verdict": ..., "evidence": ...}}.

    Args:
        accuracy: the accuracy table (rows of `summarise`).
        gradients: the gradient-ratio table.
        attention: the attention table.
        robustness: the robustness (lesion) table.
        depths: the depths run, ascending (the last is the deepest).
        variants: the variants run.

    Returns:
        A dict `{prediction: {"verdict": ..., ...}}` for every prediction of `CRITERIA`; a verdict is a str, or
        a dict of them per mechanism or per "mechanism@depth" (per lesion kind for the robustness one).
    """
    out = {}
    deep, shallow = depths[-1], depths[0]
    middle = depths[-2] if len(depths) > 1 else None
    mechanisms = [v for v in variants if VARIANTS[v][2] == "layer_attended"]
    if middle is not None:
        a, b = row_of(accuracy, deep, "plain"), row_of(accuracy, middle, "plain")
        test = welch(a["train_acc_values"], b["train_acc_values"])
        out["degradation"] = {"verdict": _test_verdict(test, -1), "depths": [deep, middle], "evidence": test}
        g_deep, g_shallow = row_of(gradients, deep, "plain"), row_of(gradients, shallow, "plain")
        test = welch([v for v in g_deep["log10_ratio_e0_values"] if v is not None],
                     [v for v in g_shallow["log10_ratio_e0_values"] if v is not None])
        out["dilution_grows_with_depth"] = {"verdict": _test_verdict(test, -1), "depths": [deep, shallow],
                                            "evidence": test}
    else:
        out["degradation"] = out["dilution_grows_with_depth"] = {"verdict": "not measurable here",
                                                                 "evidence": "needs two depths"}
    per = {}
    for m in mechanisms:
        r = row_of(accuracy, deep, m)
        per[m] = verdict(r["train_acc_p_vs_plain"], r["train_acc_diff_vs_plain"], r["seeds"], +1)
    out["attended_trains_where_plain_degrades"] = {"verdict": per, "depth": deep}
    per = {}
    for depth in depths:
        for m in mechanisms:
            g = row_of(gradients, depth, m)
            later = "log10_ratio_e1" if "log10_ratio_e1_mean" in g else "log10_ratio_e0"
            plain_g = row_of(gradients, depth, "plain")
            each = [verdict(g[f"{k}_p_vs_plain"], (g[f"{k}_mean"] or 0) - (plain_g[f"{k}_mean"] or 0),
                            min(len([v for v in g[f"{k}_values"] if v is not None]),
                                len([v for v in plain_g[f"{k}_values"] if v is not None])), +1)
                    for k in ("log10_ratio_e0", later)]
            per[f"{m}@{depth}"] = ("held" if all(v == "held" for v in each) else "did not hold"
                                   if "did not hold" in each else next(v for v in each if v != "held"))
    out["attention_reduces_dilution"] = {"verdict": per}
    out["lowest_layer_first_then_climbing"] = {
        "verdict": {f"{r['variant']}@{r['depth']}": "held" if r["held"] else "did not hold" for r in attention}}
    per = {}
    for depth in depths:
        for m in mechanisms:
            r = row_of(robustness, depth, m)
            n = row_of(accuracy, depth, m)["seeds"]
            per[f"{m}@{depth}"] = {
                kind: verdict(r[f"{kind}_drop_p_vs_plain"], r[f"{kind}_drop_diff_vs_plain"] or 0, n, -1)
                for kind in ("zero", "reinit")}
    out["robust_to_downstream_corruption"] = {"verdict": per}
    return out
