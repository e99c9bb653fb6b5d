"""The depth study: do the layer-attended paper's claims show where they should, in deep networks?

    lacnn-zoo study depth                     # digits, depths 8/20/56, 3 seeds, 8 variants (about 35-45 min, 2 CPUs)
    lacnn-zoo study depth --quick             # depths 8/20, 2 seeds, 4 variants, 3 epochs (a few minutes)
    lacnn-zoo study depth --dataset cifar10 --depths 20 56 --epochs 30 --out runs/depth-cifar

Every variant is trained by `lacnn_zoo.experiments.compare.run_one` (so `lacnn_zoo.training.train`) with one recipe (the
zoo's default: AdamW, cosine decay, batch 64), one seed set and one width per stage:

    plain                     the plain Conv-BN-ReLU backbone (`plain_cnn_tiny` with `depth`, `widths`)
    resnet_add/beta/projection    ResNet-D (`resnet8` with `depth=D`, `mixing`)
    lacnn_<mechanism>         the four layer-attended heads over that plain backbone, one tap per layer

Depth D (He et al.'s naming, D = 6n + 2): ResNet-D has D - 1 convolutions on its main path (a stem and
3 x n blocks of two) and a classifier; the plain backbone and the layer-attended networks have 3 stages of
(D - 2) / 3 Conv-BN-ReLU layers (D - 2 convolutions): 6, 18 and 54 for D = 8, 20, 56.

Written to `--out`: a run folder per (variant, depth, seed), `<variant>/depth<D>/seed<k>/` (a normal training run
with `history.csv`, `grad_norms.csv`, `layer_attention.csv`), the lesion results `lesions/<variant>-d<D>-s<k>.json`,
and the summary: `study.json` (every table, the criteria stated before the runs and their verdicts),
`study.md` (the tables in Markdown), `accuracy.csv`, `gradients.csv`, `attention.csv`, `robustness.csv` and the plots `training_curves.png`,
`test_accuracy.png`, `gradient_ratio.png`, `attention.png`, `robustness.png`.  Finished runs and lesion files are
reused, so an interrupted study resumes where it stopped; a run made with another configuration is refused.
"""

import gc
import math
import os
import time

import keras
import numpy as np

from lacnn_zoo.experiments.compare import BACKBONE_LAYER, backbone_profile, read_csv, run_one
from lacnn_zoo.io import LOCK_NAME, OWNER_MARKER, FolderLock, read_json, write_csv, write_json
from lacnn_zoo.options import VARIANTS  # variant -> (registered model, fixed overrides, family)
from lacnn_zoo.plotting import pyplot, save_figure
from lacnn_zoo.training.run_folder import RunFolder
from lacnn_zoo.validation import check_positive_int

FULL = dict(variants=tuple(VARIANTS), depths=(8, 20, 56), seeds=(0, 1, 2), epochs=6, widths=(8, 16, 32))
QUICK = dict(variants=("plain", "resnet_add", "lacnn_static_vector", "lacnn_dynamic_recurrent"), depths=(8, 20),
             seeds=(0, 1), epochs=3, widths=(8, 16, 32))
GRAD_EPOCHS = (1, 2, 3)
CONFIDENCE = 0.95
ALPHA = 0.05
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
    """Convolutions on the main path of `variant` at depth D: D - 1 for ResNet-D, D - 2 for the others."""
    return depth - 1 if VARIANTS[variant][2] == "residual" else depth - 2


def variant_overrides(variant, depth, widths):
    """The knobs that build `variant` at depth D with `widths` (3 stages)."""
    model, fixed, family = VARIANTS[variant]
    layers_per_stage = depth if family == "residual" else (depth - 2) // 3
    return model, {**fixed, "depth": layers_per_stage, "widths": list(widths)}


def check_study_arguments(variants, depths, seeds, epochs, widths):
    variants = list(variants)
    unknown = [v for v in variants if v not in VARIANTS]
    if not variants or unknown:
        raise ValueError(f"`variants` must be a non-empty list of {', '.join(VARIANTS)}; received {variants!r}.")
    if "plain" not in variants:
        raise ValueError(f"`variants` must include 'plain' (every variant is compared with it); received {variants!r}.")
    depths = list(depths)
    bad = [d for d in depths if isinstance(d, bool) or not isinstance(d, int) or d < 8 or (d - 2) % 6]
    if not depths or bad:
        raise ValueError(f"`depths` must be one or more integers 6n + 2 >= 8 (8, 14, 20, 32, 56, ...: ResNet-D's "
                         f"naming); received depths={depths!r}.")
    seeds = list(seeds)
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) for s in seeds) or len(set(seeds)) != len(seeds):
        raise ValueError(f"`seeds` must be one or more distinct integers; received seeds={seeds!r}.")
    check_positive_int("epochs", epochs)
    widths = list(widths)
    if len(widths) != 3 or any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in widths):
        raise ValueError(f"`widths` must be three positive integers (filters of the 3 stages); received "
                         f"widths={widths!r}.")
    return variants, sorted(set(depths)), seeds, widths


# ---------------------------------------------------------------------------------------------------- statistics

def welch(a, b, confidence=CONFIDENCE):
    """Welch's unequal-variance t-test of mean(a) - mean(b), with its `confidence` interval.

    t = (m_a - m_b) / sqrt(s_a^2/n_a + s_b^2/n_b), df by Welch-Satterthwaite, two-sided p.  Returns a dict
    (diff, ci_low, ci_high, t, df, p); the interval and test are None with fewer than 2 values in a group or no
    spread in either (the test is undefined there).
    """
    from scipy import stats

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    out = {"diff": float(a.mean() - b.mean()), "ci_low": None, "ci_high": None, "t": None, "df": None, "p": None,
           "n_a": len(a), "n_b": len(b)}
    if len(a) < 2 or len(b) < 2:
        return out
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se <= 1e-12 * max(1.0, abs(a.mean()), abs(b.mean())):  # no spread (up to round-off): undefined
        return out
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    t = out["diff"] / se
    half = float(stats.t.ppf(0.5 + confidence / 2, df)) * se
    out.update(t=float(t), df=float(df), p=float(2 * stats.t.sf(abs(t), df)),
               ci_low=out["diff"] - half, ci_high=out["diff"] + half)
    return out


def mean_std(values):
    """(mean, sample std) of the values that are not None; (None, None) when none is; std 0 for one value."""
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


# Fewer seeds than this per side leave Welch's test with under 2 degrees of freedom (t_0.975 = 12.7 at df = 1):
# a prediction that is not significant then is "not shown", not "did not hold".
MIN_SEEDS = 3


def verdict(p, diff, n, sign):
    """A criterion's verdict from a Welch test: "held" (p < ALPHA, difference of the predicted `sign`), "did not
    hold" (significant the other way, or not significant with at least MIN_SEEDS values per side), or "not shown"
    when the test had too few values per side (`n`) to tell."""
    if p is not None and p < ALPHA and np.sign(diff) == sign:
        return "held"
    if (p is not None and p < ALPHA) or n >= MIN_SEEDS:
        return "did not hold"
    return f"not shown: n={n} per side (the criterion needs >= {MIN_SEEDS} seeds)"


def _test_verdict(test, sign):
    return verdict(test["p"], test["diff"], min(test["n_a"], test["n_b"]), sign)


# ---------------------------------------------------------------------------------------------------- lesions

@keras.saving.register_keras_serializable(package="lacnn_zoo_study")
class OutputGate(keras.layers.Layer):
    """Multiplies its input by a non-trainable scalar (1: pass, 0: the layer's output replaced by zeros)."""

    def build(self, input_shape):
        self.gate = self.add_weight(name="gate", shape=(), initializer="ones", trainable=False)

    def call(self, x):
        return x * keras.ops.cast(self.gate, x.dtype)


def backbone_units(model):
    """Names of the backbone's layers in depth order: plain layers, ResNet stem and blocks, a layer-attended
    network's tapped layers (top-level layers named stem / stage*_* that hold weights)."""
    return [layer.name for layer in model.layers if BACKBONE_LAYER.match(layer.name) and layer.weights]


def gated_model(model, units):
    """A model sharing `model`'s layers (and weights) with an `OutputGate` after each of `units`.

    Built with `keras.models.clone_model(clone_function=identity, call_function=...)`, so it works for every
    functional model (plain, residual, layer-attended).  Returns (gated model, {unit: gate layer}).
    """
    gates = {}

    def call_function(layer, *args, **kwargs):
        out = layer(*args, **kwargs)
        if layer.name in units:
            gates[layer.name] = OutputGate(name=f"{layer.name}_gate")
            out = gates[layer.name](out)
        return out

    gated = keras.models.clone_model(model, clone_function=lambda layer: layer, call_function=call_function)
    missing = sorted(set(units) - set(gates))
    if missing:
        raise ValueError(f"`units` {missing} are not layers of {model.name!r}.")
    return gated, gates


def _accuracy(model, x, y, batch_size=500):
    """Top-1 accuracy; `predict_on_batch` (one traced function, no per-call data pipeline) in chunks."""
    logits = np.concatenate([keras.ops.convert_to_numpy(model.predict_on_batch(x[i:i + batch_size]))
                             for i in range(0, len(x), batch_size)])
    return float(np.mean(np.argmax(logits, axis=-1) == np.asarray(y).reshape(-1)))


def lesion_accuracies(model, x, y, *, units=None, seed=0):
    """Test accuracy with each backbone layer lesioned in turn; the model is left as it was.

    Returns {"clean", "units", "zero": [...], "reinit": [...], "zero_branch": [...] or None}:
    zero: the unit's output replaced by zeros (an `OutputGate` at 0); reinit: its weights (BatchNormalization's
    statistics included) replaced by a fresh draw of its initialisers (`keras.models.clone_model` under `seed`);
    zero_branch (residual blocks only): the block's residual branch f(x) set to 0 (its last BatchNormalization's
    gamma and beta zeroed), the shortcut kept: Veit et al.'s (2016) lesion.
    """
    units = list(units or backbone_units(model))
    gated, gates = gated_model(model, units)
    result = {"clean": _accuracy(gated, x, y), "units": units, "zero": [], "reinit": []}
    for unit in units:
        gates[unit].gate.assign(0.0)
        result["zero"].append(_accuracy(gated, x, y))
        gates[unit].gate.assign(1.0)
    keras.utils.set_random_seed(seed)
    fresh = keras.models.clone_model(model)
    for unit in units:
        layer, saved = model.get_layer(unit), model.get_layer(unit).get_weights()
        layer.set_weights(fresh.get_layer(unit).get_weights())
        result["reinit"].append(_accuracy(gated, x, y))
        layer.set_weights(saved)
    blocks = [u for u in units if hasattr(model.get_layer(u), "bn2") and hasattr(model.get_layer(u), "mixing")]
    if blocks and not any(model.get_layer(u).preactivation for u in blocks):
        result["zero_branch"] = []
        for unit in units:
            layer = model.get_layer(unit)
            if unit not in blocks:
                result["zero_branch"].append(None)
                continue
            bn = layer.bn2
            saved = [bn.gamma.numpy(), bn.beta.numpy()]
            bn.gamma.assign(np.zeros_like(saved[0]))
            bn.beta.assign(np.zeros_like(saved[1]))
            result["zero_branch"].append(_accuracy(gated, x, y))
            bn.gamma.assign(saved[0])
            bn.beta.assign(saved[1])
    else:
        result["zero_branch"] = None
    return result


def mean_drop(lesion, kind):
    """Clean accuracy minus the lesioned one, averaged over the units that have that lesion (None if none)."""
    values = [v for v in (lesion.get(kind) or []) if v is not None]
    return float(lesion["clean"] - np.mean(values)) if values else None


# ---------------------------------------------------------------------------------------------------- runs

def run_dir(out_dir, variant, depth, seed):
    return os.path.join(out_dir, variant, f"depth{depth}", f"seed{seed}")


def _lesion_path(out_dir, variant, depth, seed):
    return os.path.join(out_dir, "lesions", f"{variant}-d{depth}-s{seed}.json")


def _check_existing_run(path, model, overrides, epochs, dataset):
    """A run folder made with another configuration is refused (it would be reused or resumed silently)."""
    stored = RunFolder(path).raw_config()
    if stored is None:
        return
    differ = {k: (stored.get(k), v) for k, v in (("model", model), ("epochs", epochs)) if stored.get(k) != v}
    stored_overrides = stored.get("overrides") or {}
    differ.update({f"overrides[{k}]": (stored_overrides.get(k), v) for k, v in overrides.items()
                   if stored_overrides.get(k) != v})
    if os.path.basename(os.path.normpath(str(stored.get("dataset")))) != os.path.basename(os.path.normpath(str(dataset))):
        differ["dataset"] = (stored.get("dataset"), dataset)
    if differ:
        detail = "; ".join(f"{k}: stored {a!r}, asked {b!r}" for k, (a, b) in differ.items())
        raise ValueError(f"The study folder holds a run {path!r} made with another configuration ({detail}); "
                         "use another --out, or the same --epochs/--widths/--dataset.")


def _prepare_out(out_dir):
    """The study's folder: new, or one the study wrote (its marker); a folder with other files is refused."""
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise FileExistsError(f"`out` {out_dir!r} exists and is a file; choose a folder.")
    if os.path.isdir(out_dir):
        entries = [e for e in os.listdir(out_dir) if e != LOCK_NAME]
        marker = os.path.join(out_dir, OWNER_MARKER)
        try:
            ours = read_json(marker).get("kind") == "study"
        except (OSError, ValueError, AttributeError):
            ours = False
        if entries and not ours:
            raise FileExistsError(f"`out` {out_dir!r} holds files that lacnn-zoo's study did not write "
                                  f"({', '.join(sorted(entries)[:3])}); choose a new or empty folder.")
    os.makedirs(out_dir, exist_ok=True)
    if not os.path.exists(os.path.join(out_dir, OWNER_MARKER)):
        write_json(os.path.join(out_dir, OWNER_MARKER), {"kind": "study", "created": time.time()})


def depth_study(variants=None, *, depths=None, seeds=None, epochs=None, widths=None, quick=False, dataset="digits",
                out_dir="runs/depth-study", robustness_examples=1000, verbose=0, log=print, **data_kwargs):
    """Train every (variant, depth, seed), measure, test the paper's predictions; returns the summary dict.

    Unset arguments take `FULL`'s values (`QUICK`'s with `quick=True`).  `data_kwargs` (`data_dir`, `download`,
    `image_size`, `augment`) go to the data set as for `train`.  See the module docstring for what is written.
    """
    preset = QUICK if quick else FULL
    variants, depths, seeds, widths = check_study_arguments(
        preset["variants"] if variants is None else variants, preset["depths"] if depths is None else depths,
        preset["seeds"] if seeds is None else seeds, preset["epochs"] if epochs is None else epochs,
        preset["widths"] if widths is None else widths)
    epochs = preset["epochs"] if epochs is None else epochs
    check_positive_int("robustness_examples", robustness_examples)
    out_dir = os.fspath(out_dir)
    _prepare_out(out_dir)
    grad_epochs = tuple(e for e in GRAD_EPOCHS if e <= epochs) or (epochs,)
    start = time.perf_counter()
    with FolderLock(os.path.join(out_dir, LOCK_NAME), f"Study folder {out_dir!r}"):
        for depth in depths:
            for variant in variants:
                model, overrides = variant_overrides(variant, depth, widths)
                for seed in seeds:
                    _check_existing_run(run_dir(out_dir, variant, depth, seed), model, overrides, epochs, dataset)
        timings = []
        for depth in depths:
            for variant in variants:
                for seed in seeds:
                    t0 = time.perf_counter()
                    model, overrides = variant_overrides(variant, depth, widths)
                    path = run_dir(out_dir, variant, depth, seed)
                    reused = RunFolder(path).is_finished()
                    metrics = run_one(model, seed, out_dir, epochs, dataset, grad_epochs, verbose=verbose,
                                      overrides=overrides, run_dir=path, tensorboard=False, **data_kwargs)
                    lesion = _lesions(out_dir, variant, depth, seed, dataset, robustness_examples, data_kwargs)
                    keras.backend.clear_session()  # 72 models in one process: the full study reached 9 GB without
                    gc.collect()
                    seconds = time.perf_counter() - t0
                    timings.append({"variant": variant, "depth": depth, "seed": seed, "seconds": seconds,
                                    "reused": reused})
                    log(f"{variant:<24} depth {depth:>3} seed {seed}: test {metrics['test_accuracy']:.4f}, "
                        f"zero-lesion drop {mean_drop(lesion, 'zero'):.3f} ({'reused' if reused else 'trained'}, "
                        f"{seconds:.0f} s)")
        summary = summarise(out_dir, variants, depths, seeds, epochs)
        summary.update(config={"variants": variants, "depths": depths, "seeds": seeds, "epochs": epochs,
                               "widths": widths, "dataset": str(dataset), "recipe": "default",
                               "robustness_examples": robustness_examples, "quick": bool(quick),
                               "conv_layers": {v: {d: conv_layers(v, d) for d in depths} for v in variants}},
                       wall_time_s=time.perf_counter() - start, runs=timings, backend=keras.backend.backend())
        write_outputs(out_dir, summary)
    return summary


def _lesions(out_dir, variant, depth, seed, dataset, limit, data_kwargs):
    path = _lesion_path(out_dir, variant, depth, seed)
    if os.path.exists(path):
        return read_json(path)
    from lacnn_zoo.data import load_dataset
    from lacnn_zoo.models.saving import load_model

    data = load_dataset(dataset, seed=seed, **{k: v for k, v in data_kwargs.items() if v})
    x, y = data.arrays("test", limit)
    model = load_model(RunFolder(run_dir(out_dir, variant, depth, seed)).best, compile=False)
    result = {**lesion_accuracies(model, x, y, seed=seed), "examples": int(len(y))}
    write_json(path, result)
    keras.backend.clear_session()
    return result


# ---------------------------------------------------------------------------------------------------- summary

def _history(out_dir, variant, depth, seed):
    return RunFolder(run_dir(out_dir, variant, depth, seed)).history()


def _grad_ratio(out_dir, variant, depth, seed, epoch):
    path = os.path.join(run_dir(out_dir, variant, depth, seed), "grad_norms.csv")
    profile = backbone_profile(read_csv(path), epoch) if os.path.exists(path) else []
    if len(profile) < 2 or profile[-1] <= 0 or profile[0] <= 0:
        return None
    return math.log10(profile[0] / profile[-1])


def attention_rows(out_dir, variant, depth, seed):
    """(epochs, weights[e, layer]) of a layer-attended run's `layer_attention.csv` (epoch 0 first)."""
    rows = np.array([[float(v) for v in r.values()] for r in
                     read_csv(os.path.join(run_dir(out_dir, variant, depth, seed), "layer_attention.csv"))])
    rows = rows[np.argsort(rows[:, 0])]
    return rows[:, 0].astype(int), rows[:, 1:]


def climbing_criterion(epochs, weights):
    """The section-4 criterion of one seed (see CRITERIA): argmax of the shift from epoch 0, lowest third first,
    then non-decreasing.  Returns (agrees, [a_1, ..., a_E] as 1-based layer indices)."""
    if epochs[0] != 0 or len(epochs) < 2:
        return None, []
    shift = weights[1:] - weights[0]
    argmax = [int(np.argmax(s)) + 1 for s in shift]
    n = weights.shape[1]
    agrees = argmax[0] <= math.ceil(n / 3) and all(b >= a for a, b in zip(argmax, argmax[1:]))
    return bool(agrees), argmax


def summarise(out_dir, variants, depths, seeds, epochs):
    accuracy, gradients, attention, robustness = [], [], [], []
    grad_epochs = [0, *[e for e in GRAD_EPOCHS if e <= epochs]]
    for depth in depths:
        plain = {}
        for variant in variants:
            histories = [_history(out_dir, variant, depth, s) for s in seeds]
            metrics = [RunFolder(run_dir(out_dir, variant, depth, s)).metrics() for s in seeds]
            test = [m["test_accuracy"] for m in metrics]
            train_acc = [float(h[-1]["accuracy"]) for h in histories]
            train_loss = [float(h[-1]["loss"]) for h in histories]
            lesions = [read_json(_lesion_path(out_dir, variant, depth, s)) for s in seeds]
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


def _row(rows, depth, variant):
    return next(r for r in rows if r["depth"] == depth and r["variant"] == variant)


def verdicts(accuracy, gradients, attention, robustness, depths, variants):
    """Apply CRITERIA to the tables: {prediction: {"verdict": ..., "evidence": ...}}."""
    out = {}
    deep, shallow = depths[-1], depths[0]
    middle = depths[-2] if len(depths) > 1 else None
    mechanisms = [v for v in variants if VARIANTS[v][2] == "layer_attended"]
    if middle is not None:
        a, b = _row(accuracy, deep, "plain"), _row(accuracy, middle, "plain")
        test = welch(a["train_acc_values"], b["train_acc_values"])
        out["degradation"] = {"verdict": _test_verdict(test, -1), "depths": [deep, middle], "evidence": test}
        g_deep, g_shallow = _row(gradients, deep, "plain"), _row(gradients, shallow, "plain")
        test = welch([v for v in g_deep["log10_ratio_e0_values"] if v is not None],
                     [v for v in g_shallow["log10_ratio_e0_values"] if v is not None])
        out["dilution_grows_with_depth"] = {"verdict": _test_verdict(test, -1), "depths": [deep, shallow],
                                            "evidence": test}
    else:
        out["degradation"] = out["dilution_grows_with_depth"] = {"verdict": "not measurable here",
                                                                 "evidence": "needs two depths"}
    per = {}
    for m in mechanisms:
        r = _row(accuracy, deep, m)
        per[m] = verdict(r["train_acc_p_vs_plain"], r["train_acc_diff_vs_plain"], r["seeds"], +1)
    out["attended_trains_where_plain_degrades"] = {"verdict": per, "depth": deep}
    per = {}
    for depth in depths:
        for m in mechanisms:
            g = _row(gradients, depth, m)
            later = "log10_ratio_e1" if "log10_ratio_e1_mean" in g else "log10_ratio_e0"
            plain_g = _row(gradients, depth, "plain")
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
            r = _row(robustness, depth, m)
            n = _row(accuracy, depth, m)["seeds"]
            per[f"{m}@{depth}"] = {
                kind: verdict(r[f"{kind}_drop_p_vs_plain"], r[f"{kind}_drop_diff_vs_plain"] or 0, n, -1)
                for kind in ("zero", "reinit")}
    out["robust_to_downstream_corruption"] = {"verdict": per}
    return out


# ---------------------------------------------------------------------------------------------------- outputs

def write_outputs(out_dir, summary):
    write_json(os.path.join(out_dir, "study.json"), summary)
    from lacnn_zoo.io import atomic_path

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


def _colours(variants):
    plt = pyplot()
    return dict(zip(variants, plt.get_cmap("tab10")(np.arange(len(variants)) % 10)))


def plot_training_curves(out_dir, config, path):
    plt = pyplot()
    depths, variants, seeds = config["depths"], config["variants"], config["seeds"]
    fig, axes = plt.subplots(len(depths), 2, figsize=(11, 3.1 * len(depths)), dpi=100, squeeze=False)
    colours = _colours(variants)
    for row, depth in zip(axes, depths):
        for variant in variants:
            hist = [_history(out_dir, variant, depth, s) for s in seeds]
            for ax, key in zip(row, ("loss", "accuracy")):
                values = np.array([[float(r[key]) for r in h] for h in hist])
                mean, std = values.mean(axis=0), values.std(axis=0)
                x = np.arange(1, values.shape[1] + 1)
                ax.plot(x, mean, color=colours[variant], label=variant,
                        linestyle="-" if variant == "plain" else ("--" if "resnet" in variant else ":"),
                        linewidth=2.2 if variant == "plain" else 1.3)
                ax.fill_between(x, mean - std, mean + std, color=colours[variant], alpha=0.12)
        row[0].set_ylabel(f"D={depth}\ntraining loss")
        row[0].set_yscale("log")
        row[1].set_ylabel("training accuracy")
        for ax in row:
            ax.grid(alpha=0.3)
            ax.set_xlabel("epoch")
    axes[0][1].legend(fontsize=7, loc="lower right")
    fig.suptitle(f"training set, mean ± std over {len(seeds)} seeds (degradation is a training-set effect)")
    fig.tight_layout()
    save_figure(fig, path)


def plot_test_accuracy(summary, path):
    plt = pyplot()
    config = summary["config"]
    depths, variants = config["depths"], config["variants"]
    colours = _colours(variants)
    fig, ax = plt.subplots(figsize=(10, 4.2), dpi=100)
    width = 0.8 / len(variants)
    for i, variant in enumerate(variants):
        rows = [_row(summary["accuracy"], d, variant) for d in depths]
        xs = np.arange(len(depths)) + (i - (len(variants) - 1) / 2) * width
        ax.bar(xs, [r["test_acc_mean"] for r in rows], width, yerr=[r["test_acc_std"] for r in rows],
               color=colours[variant], label=variant, capsize=2)
    ax.set_xticks(np.arange(len(depths)), [f"D={d}" for d in depths])
    ax.set_ylabel("test accuracy (mean ± std over seeds)")
    ax.set_ylim(0, 1.05)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=7, ncol=4, loc="lower left")
    fig.tight_layout()
    save_figure(fig, path)


def plot_gradient_ratio(summary, path):
    plt = pyplot()
    config = summary["config"]
    depths, variants = config["depths"], config["variants"]
    colours = _colours(variants)
    epochs = sorted(int(k.split("_e")[1].split("_")[0]) for k in summary["gradients"][0] if k.endswith("_mean"))
    fig, axes = plt.subplots(1, len(depths), figsize=(4.2 * len(depths), 3.6), dpi=100, sharey=True, squeeze=False)
    for ax, depth in zip(axes[0], depths):
        for variant in variants:
            g = _row(summary["gradients"], depth, variant)
            mean = [g[f"log10_ratio_e{e}_mean"] for e in epochs]
            std = [g[f"log10_ratio_e{e}_std"] for e in epochs]
            if any(m is None for m in mean):
                continue
            ax.errorbar(epochs, mean, yerr=std, marker="o", markersize=3, capsize=2, color=colours[variant],
                        label=variant)
        ax.axhline(0, color="grey", linewidth=0.8)
        ax.set_title(f"D={depth}")
        ax.set_xlabel("epoch (0 = initialisation)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("log10 ||dL/dW first|| / ||dL/dW last||")
    axes[0][-1].legend(fontsize=7)
    fig.suptitle("gradient dilution: first-to-last backbone layer gradient-norm ratio (mean ± std over seeds)")
    fig.tight_layout()
    save_figure(fig, path)


def plot_attention(out_dir, config, path):
    mechanisms = [v for v in config["variants"] if VARIANTS[v][2] == "layer_attended"]
    if not mechanisms:
        return
    plt = pyplot()
    depths, seeds = config["depths"], config["seeds"]
    fig, axes = plt.subplots(len(mechanisms), len(depths), figsize=(3.8 * len(depths), 2.6 * len(mechanisms)),
                             dpi=100, squeeze=False)
    for i, m in enumerate(mechanisms):
        for j, depth in enumerate(depths):
            ax = axes[i][j]
            shifts = []
            for s in seeds:
                ep, w = attention_rows(out_dir, m, depth, s)
                shifts.append(w - w[0])
            length = min(len(s) for s in shifts)
            mean = np.mean([s[:length] for s in shifts], axis=0)
            bound = float(np.abs(mean).max()) or 1.0
            image = ax.imshow(mean.T, aspect="auto", origin="lower", cmap="RdBu_r", vmin=-bound, vmax=bound,
                              extent=(-0.5, length - 0.5, 0.5, mean.shape[1] + 0.5))
            ax.plot(np.arange(length), np.argmax(mean, axis=1) + 1, color="k", marker=".", linewidth=0.8)
            fig.colorbar(image, ax=ax, fraction=0.05)
            ax.set_title(f"{m.replace('lacnn_', '')}, D={depth}", fontsize=8)
            ax.set_xlabel("epoch", fontsize=7)
            ax.set_ylabel("layer (1 = lowest)", fontsize=7)
    fig.suptitle(f"attention shift from before training, w_e - w_0 (mean of {len(seeds)} seeds); black: argmax layer")
    fig.tight_layout()
    save_figure(fig, path)


def plot_robustness(out_dir, config, path):
    plt = pyplot()
    depths, variants, seeds = config["depths"], config["variants"], config["seeds"]
    colours = _colours(variants)
    fig, axes = plt.subplots(2, len(depths), figsize=(4.2 * len(depths), 6.4), dpi=100, sharey=True,
                             squeeze=False)
    for j, depth in enumerate(depths):
        for i, kind in enumerate(("zero", "reinit")):
            ax = axes[i][j]
            for variant in variants:
                lesions = [read_json(_lesion_path(out_dir, variant, depth, s)) for s in seeds]
                drops = np.array([[les["clean"] - v for v in les[kind]] for les in lesions])
                x = (np.arange(drops.shape[1]) + 1) / drops.shape[1]
                ax.plot(x, drops.mean(axis=0), color=colours[variant], label=variant, marker=".", markersize=3,
                        linewidth=1)
            ax.set_title(f"D={depth}: {'output zeroed' if kind == 'zero' else 'weights re-initialised'}", fontsize=9)
            ax.set_xlabel("lesioned layer (relative depth, 1 = last)")
            ax.grid(alpha=0.3)
        axes[0][j].set_ylabel("test accuracy drop")
        axes[1][j].set_ylabel("test accuracy drop")
    axes[0][-1].legend(fontsize=7)
    fig.suptitle(f"robustness: one backbone layer lesioned at test time (mean of {len(seeds)} seeds)")
    fig.tight_layout()
    save_figure(fig, path)


def _fmt(mean, std, digits=3):
    return "-" if mean is None else f"{mean:.{digits}f} ± {std:.{digits}f}"


def _p(p):
    return "n/a" if p is None else (f"{p:.3f}" if p >= 0.001 else "<0.001")


def print_summary(summary, file=None):
    import sys

    file = file or sys.stdout
    print(f"{'D':>3} {'variant':<24} {'convs':>5} {'test acc':>15} {'diff vs plain [95% CI]':>30} {'p':>6} "
          f"{'train acc':>15} {'p':>6}", file=file)
    for r in summary["accuracy"]:
        diff = "" if r["test_acc_diff_vs_plain"] is None else (
            f"{r['test_acc_diff_vs_plain']:+.3f}" + ("" if r["test_acc_ci_low"] is None else
                                                     f" [{r['test_acc_ci_low']:+.3f}, {r['test_acc_ci_high']:+.3f}]"))
        print(f"{r['depth']:>3} {r['variant']:<24} {r['conv_layers']:>5} {_fmt(r['test_acc_mean'], r['test_acc_std']):>15} "
              f"{diff:>30} {_p(r['test_acc_p_vs_plain']) if r['variant'] != 'plain' else '':>6} "
              f"{_fmt(r['train_acc_mean'], r['train_acc_std']):>15} "
              f"{_p(r['train_acc_p_vs_plain']) if r['variant'] != 'plain' else '':>6}", file=file)
    print(f"\n{'D':>3} {'variant':<24} {'log10 grad first/last: init':>28} {'epoch 1':>15} "
          f"{'drop zero':>15} {'drop reinit':>15}", file=file)
    for g, r in zip(summary["gradients"], summary["robustness"]):
        print(f"{g['depth']:>3} {g['variant']:<24} {_fmt(g['log10_ratio_e0_mean'], g['log10_ratio_e0_std'], 2):>28} "
              f"{_fmt(g.get('log10_ratio_e1_mean'), g.get('log10_ratio_e1_std'), 2):>15} "
              f"{_fmt(r['zero_drop_mean'], r['zero_drop_std']):>15} {_fmt(r['reinit_drop_mean'], r['reinit_drop_std']):>15}",
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
    """The study's tables as Markdown (what `study.md` holds)."""
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
                     f"{_fmt(r['zero_drop_mean'], r['zero_drop_std'])} | {'-' if plain else _p(r['zero_drop_p_vs_plain'])} | "
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
