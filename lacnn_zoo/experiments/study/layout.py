"""The depth study's variants, sizes, criteria and the layout of its folder."""

import csv
import os

import numpy as np

from lacnn_zoo.options import VARIANTS  # variant -> (registered model, fixed overrides, family)
from lacnn_zoo.training.run_folder import RunFolder

FULL = dict(variants=tuple(VARIANTS), depths=(8, 20, 56), seeds=(0, 1, 2), epochs=6, widths=(8, 16, 32))
QUICK = dict(variants=("plain", "resnet_add", "lacnn_static_vector", "lacnn_dynamic_recurrent"), depths=(8, 20),
             seeds=(0, 1), epochs=3, widths=(8, 16, 32))
GRAD_EPOCHS = (1, 2, 3)
STUDY_ENTRIES = ("study.json", "study.md", "accuracy.csv", "gradients.csv", "attention.csv", "robustness.csv",
                 "training_curves.png", "test_accuracy.png", "gradient_ratio.png", "attention.png", "robustness.png")

# The criteria, fixed before any run (they are written into study.json with the verdicts).
CRITERIA = {
    "degradation": (
        "He et al.'s degradation: the plain backbone's final-epoch TRAINING accuracy at the deepest depth is below "
        "its value at the middle depth (Welch t-test, p < 0.05). 'Held' if so; 'did not hold' otherwise."),
    "attended_trains_where_plain_degrades": (
        "For each mechanism, its final-epoch training accuracy at the deepest depth exceeds the plain backbone's "
        "(Welch, p < 0.05). 'Held' for all four / some / none is reported per mechanism."),
    "dilution_grows_with_depth": (
        "Gradient dilution: log10(||dL/dW_first|| / ||dL/dW_last||) of the plain backbone at initialisation is "
        "lower at the deepest depth than at the shallowest (Welch, p < 0.05)."),
    "attention_reduces_dilution": (
        "At each depth, a mechanism's log10 first/last gradient-norm ratio at initialisation and after epoch 1 is "
        "higher than the plain backbone's (Welch, p < 0.05 at both)."),
    "lowest_layer_first_then_climbing": (
        "Section 4, per (mechanism, depth, seed): let s_e = w_e - w_0 be the per-layer attention after epoch e minus "
        "its before-training row, and a_e = argmax_i s_e (layers 1..n, lowest first). The seed agrees if a_1 is in "
        "the lowest third (a_1 <= ceil(n/3)) AND a_1 <= a_2 <= ... <= a_E (non-decreasing). The prediction holds for "
        "(mechanism, depth) when at least 2 of 3 seeds agree (a majority of the seeds run)."),
    "robust_to_downstream_corruption": (
        "Per backbone layer k in turn, at test time: (zero) its output replaced by zeros, (reinit) its weights "
        "re-drawn from the initialisers; drop = clean test accuracy - lesioned. Per run the drop is averaged over "
        "layers. The claim holds for a mechanism at a depth when its mean drop is below the plain backbone's "
        "(Welch, p < 0.05), for zero and reinit separately."),
}


def conv_layers(variant, depth):
    """Convolutions on the main path of `variant` at depth D: D - 1 for ResNet-D, D - 2 for the others.

    Args:
        variant: a name of `VARIANTS`.
        depth: the study's depth D.

    Returns:
        The number of convolutions, an int.
    """
    return depth - 1 if VARIANTS[variant][2] == "residual" else depth - 2


def variant_overrides(variant, depth, widths):
    """The knobs that build `variant` at depth D with `widths` (3 stages).

    Args:
        variant: a name of `VARIANTS`.
        depth: the study's depth D.
        widths: filters of the 3 stages.

    Returns:
        `(model name, overrides)`: the registered model and the knobs for `build_model` (the variant's fixed
        knobs, `depth`: D for ResNets, (D - 2) // 3 layers per stage for the others, and `widths` as a list).
    """
    model, fixed, family = VARIANTS[variant]
    layers_per_stage = depth if family == "residual" else (depth - 2) // 3
    return model, {**fixed, "depth": layers_per_stage, "widths": list(widths)}


# ---------------------------------------------------------------------------------------------------- runs

def run_dir(out_dir, variant, depth, seed):
    """The run folder of one (variant, depth, seed) in the study's folder.

    Args:
        out_dir: the study's folder.
        variant: a name of `VARIANTS`.
        depth: the study's depth D.
        seed: the run's seed.

    Returns:
        The path `<out_dir>/<variant>/depth<D>/seed<seed>`, a str.
    """
    return os.path.join(out_dir, variant, f"depth{depth}", f"seed{seed}")


def lesion_path(out_dir, variant, depth, seed):
    return os.path.join(out_dir, "lesions", f"{variant}-d{depth}-s{seed}.json")


def history(out_dir, variant, depth, seed):
    return RunFolder(run_dir(out_dir, variant, depth, seed)).history()


def attention_rows(out_dir, variant, depth, seed):
    """(epochs, weights[e, layer]) of a layer-attended run's `layer_attention.csv` (epoch 0 first)."""
    rows = np.array([[float(v) for v in r.values()] for r in
                     _read_csv(os.path.join(run_dir(out_dir, variant, depth, seed), "layer_attention.csv"))])
    rows = rows[np.argsort(rows[:, 0])]
    return rows[:, 0].astype(int), rows[:, 1:]


def row_of(rows, depth, variant):
    return next(r for r in rows if r["depth"] == depth and r["variant"] == variant)


def _read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))
