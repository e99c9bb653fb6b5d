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
`study.md` (the tables in Markdown), `accuracy.csv`, `gradients.csv`, `attention.csv`, `robustness.csv` and the
plots `training_curves.png`, `test_accuracy.png`, `gradient_ratio.png`, `attention.png`, `robustness.png`.
Finished runs and lesion files are reused, so an interrupted study resumes where it stopped; a run made with
another configuration is refused.
"""

import gc
import os
import time

import keras

from lacnn_zoo.data import load_dataset
from lacnn_zoo.errors import spell
from lacnn_zoo.experiments.compare import check_seeds, run_one
from lacnn_zoo.experiments.study.layout import (
    FULL,
    GRAD_EPOCHS,
    QUICK,
    conv_layers,
    lesion_path,
    run_dir,
    variant_overrides,
)
from lacnn_zoo.experiments.study.lesions import lesion_accuracies, mean_drop
from lacnn_zoo.experiments.study.report import write_outputs
from lacnn_zoo.experiments.study.summary import summarise
from lacnn_zoo.io import LOCK_NAME, FolderLock, is_owned, mark_owned, read_json, write_json
from lacnn_zoo.models.saving import load_model
from lacnn_zoo.options import (  # variant -> (registered model, fixed overrides, family)
    DEPTH_MAX,
    VARIANTS,
    check_bounded,
    check_fits_in_memory,
)
from lacnn_zoo.training.run_folder import RunFolder


def check_study_arguments(variants, depths, seeds, epochs, widths):
    """Refuse, before any run, study arguments that cannot be run.

    Args:
        variants: names of `VARIANTS`; they must include "plain".
        depths: depths 6n + 2 from 8 to `DEPTH_MAX`.
        seeds: distinct seeds.
        epochs: epochs per run, in the `epochs` option's range.
        widths: three positive filter counts (one per stage) whose 3x3 kernels fit in memory.

    Returns:
        `(variants, depths, seeds, widths)` as lists, the depths sorted without repeats (`epochs` is checked only).

    Raises:
        ValueError: naming the first argument that is refused.
    """
    variants = list(variants)
    unknown = [v for v in variants if v not in VARIANTS]
    if not variants or unknown:
        raise ValueError(f"`variants` must be a non-empty list of {', '.join(VARIANTS)}; received {variants!r}.")
    if "plain" not in variants:
        raise ValueError(f"`variants` must include 'plain' (every variant is compared with it); received {variants!r}.")
    depths = list(depths)
    bad = [d for d in depths
           if isinstance(d, bool) or not isinstance(d, int) or not 8 <= d <= DEPTH_MAX or (d - 2) % 6]
    if not depths or bad:
        raise ValueError(f"{spell('`depths`', '--depths')} must be one or more integers 6n + 2 from 8 to {DEPTH_MAX} "
                         f"(8, 14, 20, 32, 56, ...: ResNet-D's naming); received depths={depths!r}.")
    seeds = check_seeds(seeds)
    check_bounded("epochs", epochs, flag="--epochs")
    widths = list(widths)
    if len(widths) != 3:
        raise ValueError(f"{spell('`widths`', '--widths')} must be three positive integers (filters of the 3 stages); "
                         f"received widths={widths!r}.")
    widths = [check_bounded("size", w, "widths", "--widths") for w in widths]
    # Each stage holds a 3x3 convolution from its width to itself: its float32 kernel must fit in memory.
    check_fits_in_memory(4 * 9 * max(widths) ** 2,
                         f"A 3x3 convolution between {spell('`widths`', '--widths')} {' '.join(map(str, widths))}")
    return variants, sorted(set(depths)), seeds, widths


def _check_existing_run(path, model, overrides, epochs, dataset):
    """A run folder made with another configuration is refused (it would be reused or resumed silently)."""
    stored = RunFolder(path).raw_config()
    if stored is None:
        return
    differ = {k: (stored.get(k), v) for k, v in (("model", model), ("epochs", epochs)) if stored.get(k) != v}
    stored_overrides = stored.get("overrides") or {}
    differ.update({f"overrides[{k}]": (stored_overrides.get(k), v) for k, v in overrides.items()
                   if stored_overrides.get(k) != v})
    same_name = os.path.basename(os.path.normpath(str(dataset)))
    if os.path.basename(os.path.normpath(str(stored.get("dataset")))) != same_name:
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
        if entries and not is_owned(out_dir, "study"):
            raise FileExistsError(f"`out` {out_dir!r} holds files that lacnn-zoo's study did not write "
                                  f"({', '.join(sorted(entries)[:3])}); choose a new or empty folder.")
    os.makedirs(out_dir, exist_ok=True)
    if not is_owned(out_dir, "study"):
        mark_owned(out_dir, "study")


def depth_study(variants=None, *, depths=None, seeds=None, epochs=None, widths=None, quick=False, dataset="digits",
                out_dir="runs/depth-study", robustness_examples=1000, verbose=0, log=print, **data_kwargs):
    """Train every (variant, depth, seed), measure, test the paper's predictions; returns the summary dict.

    Unset arguments take `FULL`'s values (`QUICK`'s with `quick=True`).  `data_kwargs` (`data_dir`, `download`,
    `image_size`, `augment`) go to the data set as for `train`.  See the module docstring for what is written.

    Args:
        variants: names of `VARIANTS` to run ("plain" included).
        depths: depths 6n + 2.
        seeds: distinct seeds; each (variant, depth) runs once per seed.
        epochs: epochs per run.
        widths: filters of the 3 stages.
        quick: take the unset arguments from `QUICK` instead of `FULL`.
        dataset: the data set, as `load_dataset`'s `name`.
        out_dir: the study's folder: new, or one an earlier study wrote (its runs are reused).
        robustness_examples: test examples the lesions are measured on.
        verbose: Keras' verbosity of the training runs.
        log: called with one line of text per finished run.
        **data_kwargs: keyword arguments for the data set (`data_dir`, `download`, `image_size`, `augment`).

    Returns:
        The summary dict (also in `study.json`): the tables "accuracy", "gradients", "attention", "robustness",
        "predictions" (the verdicts), "criteria", "config", "wall_time_s", "runs" (their timings) and "backend".

    Raises:
        ValueError: a refused argument, or a run in `out_dir` made with another configuration.
        FileExistsError: `out_dir` is a file, or a folder holding files the study did not write.
    """
    preset = QUICK if quick else FULL
    variants, depths, seeds, widths = check_study_arguments(
        preset["variants"] if variants is None else variants, preset["depths"] if depths is None else depths,
        preset["seeds"] if seeds is None else seeds, preset["epochs"] if epochs is None else epochs,
        preset["widths"] if widths is None else widths)
    epochs = preset["epochs"] if epochs is None else epochs
    check_bounded("examples", robustness_examples, "robustness_examples", "--robustness-examples")
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
    path = lesion_path(out_dir, variant, depth, seed)
    if os.path.exists(path):
        return read_json(path)

    data = load_dataset(dataset, seed=seed, **{k: v for k, v in data_kwargs.items() if v})
    x, y = data.arrays("test", limit)
    model = load_model(RunFolder(run_dir(out_dir, variant, depth, seed)).best, compile=False)
    result = {**lesion_accuracies(model, x, y, seed=seed), "examples": int(len(y))}
    write_json(path, result)
    keras.backend.clear_session()
    return result
