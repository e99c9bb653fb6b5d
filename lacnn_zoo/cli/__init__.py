"""`lacnn-zoo` command line: train, list, info."""

import argparse
import ast
import json
import os
import sys

from lacnn_zoo.data import AUGMENTS
from lacnn_zoo.errors import run_command


def parse_override(text):
    """`key=value`, the value read as a Python literal when it is one (`widths=(16,32)`, `mixing=beta`)."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--set takes key=value; received {text!r}.")
    key, raw = text.split("=", 1)
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw
    return key.strip(), value


def _verbosity(text):
    if text in ("auto", "0", "1", "2"):
        return text if text == "auto" else int(text)
    raise argparse.ArgumentTypeError(f"--verbose takes auto, 0, 1 or 2; received {text!r}.")


def _train(args):
    from lacnn_zoo import training
    from lacnn_zoo.io import read_json

    if args.resume:
        if not args.output_dir:
            raise ValueError("--resume needs --output-dir (the folder of the run to continue).")
        run_file = os.path.join(args.output_dir, "run.json")
        if not os.path.exists(run_file):
            raise FileNotFoundError(f"--resume: {args.output_dir!r} holds no lacnn-zoo run (no run.json there).")
        stored = read_json(run_file)
    else:
        stored = {}
    asked = dict(
        model=args.model, dataset=args.dataset, epochs=args.epochs, batch_size=args.batch_size,
        learning_rate=args.lr, weight_decay=args.weight_decay, seed=args.seed,
        overrides=dict(args.set) if args.set else None,
        image_size=tuple(args.image_size) if args.image_size else None, augment=args.augment,
        mixup=args.mixup, cutmix=args.cutmix, random_erasing=args.random_erasing,
        freeze_backbone=args.freeze_backbone or None, init_weights=args.init_weights, recipe=args.recipe,
        optimizer=args.optimizer, momentum=args.momentum, nesterov=args.nesterov, schedule=args.schedule,
        milestones=tuple(args.milestones) if args.milestones else None, decay_factor=args.decay_factor,
        warmup_epochs=args.warmup_epochs, label_smoothing=args.label_smoothing, clipnorm=args.clipnorm,
        ema=args.ema, precision=args.precision, scale_lr=args.scale_lr, validation_fraction=args.validation_fraction,
        test_fraction=args.test_fraction, train_split=args.train_split, test_split=args.test_split,
    )
    if args.resume:  # what was not asked is what the run was started with
        stored = {**training.RUN_KEY_DEFAULTS, **stored}
        asked = {k: (v if v is not None else stored.get(k)) for k, v in asked.items()}
        for key in ("image_size", "milestones"):
            if isinstance(asked[key], list):
                asked[key] = tuple(asked[key])
    config = {k: v for k, v in asked.items() if v is not None}
    result = training.train(
        config.pop("model", training.DEFAULT_MODEL),
        output_dir=args.output_dir,
        resume=args.resume,
        overwrite=args.overwrite,
        data_dir=args.data_dir,
        download=args.download,
        verbose=args.verbose,
        distribute=args.distribute,
        **config,
    )
    m = result.metrics
    if m is None:  # a non-chief worker of a distributed run
        print(f"\n{result.worker}: training finished; the chief writes the run to {result.output_dir}")
        return 0
    print(
        f"\n{m['model']} on {m['dataset']}: test accuracy {m['test_accuracy']:.4f}, "
        f"{m['params']:,} parameters, {m['time_per_epoch_s']:.2f} s/epoch, "
        f"{m['train_wall_time_s']:.1f} s training. Run folder: {result.output_dir}"
    )
    return 0


def _list(args):
    from lacnn_zoo import list_models, model_info

    names = list_models(args.pattern or "*", family=args.family)
    if not names:
        print(f"No model matches {args.pattern!r}.", file=sys.stderr)
        return 1
    header = f"{'name':<28} {'family':<16} {'params':>12}  description"
    print(header)
    print("-" * len(header))
    for name in names:
        info = model_info(name)
        params = f"{info.num_params(num_classes=args.num_classes):,}" if args.params else "-"
        description = info.description.splitlines()[0] if info.description else ""
        print(f"{name:<28} {info.family:<16} {params:>12}  {description}")
    return 0


def _info(args):
    from lacnn_zoo import model_info

    info = model_info(args.name)
    record = info.as_dict()
    record["knobs"] = {k: v for k, v in info.knobs.items()}
    record["params"] = info.num_params()
    if args.memory_estimate:
        from lacnn_zoo.models.resnet import training_memory_estimate

        record["memory_estimate_batch_128"] = training_memory_estimate(args.name, batch_size=128)
    if info.family == "layer_attended":
        from lacnn_zoo import build_model, tap_names

        record["taps"] = tap_names(build_model(args.name))
    print(json.dumps(record, indent=2, default=str))
    return 0


def _bench(args):
    from lacnn_zoo.experiments.bench import main_bench

    return main_bench(args)


def _compare(args):
    from lacnn_zoo.experiments.compare import compare, print_rows

    rows = compare(args.patterns or None, seeds=args.seeds, epochs=args.epochs, dataset=args.dataset,
                   target=args.target, out_dir=args.out, overrides=dict(args.set) if args.set else None,
                   data_dir=args.data_dir, download=args.download, augment=args.augment,
                   image_size=tuple(args.image_size) if args.image_size else None)
    print()
    print_rows(rows)
    print(f"\nTables and plots in {args.out}")
    return 0


def _study(args):
    from lacnn_zoo.experiments.study import VARIANTS, depth_study, print_summary

    variants = args.variants.split(",") if args.variants else None
    if variants is not None and any(v not in VARIANTS for v in variants):
        raise ValueError(f"--variants takes a comma-separated subset of {', '.join(VARIANTS)}; received "
                         f"{args.variants!r}.")
    summary = depth_study(variants, depths=args.depths, seeds=args.seeds, epochs=args.epochs,
                          widths=args.widths, quick=args.quick, dataset=args.dataset, out_dir=args.out,
                          robustness_examples=args.robustness_examples, data_dir=args.data_dir,
                          download=args.download, augment=args.augment,
                          image_size=tuple(args.image_size) if args.image_size else None)
    print()
    print_summary(summary)
    print(f"\nTables, plots and study.json in {args.out} (wall time {summary['wall_time_s']:.0f} s)")
    return 0


def _evaluate(args):
    from lacnn_zoo.training.inference import evaluate

    r = evaluate(args.model, args.dataset, seed=args.seed, batch_size=args.batch_size,
                 image_size=tuple(args.image_size) if args.image_size else None, data_dir=args.data_dir,
                 download=args.download, split=args.split, out=args.out, overwrite=args.overwrite)
    top5 = f", top-5 {r['top5']:.4f}" if "top5" in r else ""
    print(f"{r['model']} on {r['dataset']} ({r['split']}, {r['num_examples']} images): "
          f"top-1 {r['top1']:.4f}{top5}, loss {r['loss']:.4f}" + (f". Written to {args.out}" if args.out else ""))
    return 0


def _predict(args):
    from lacnn_zoo.training.inference import predict

    rows = predict(args.model, args.inputs, top_k=args.top_k, batch_size=args.batch_size, csv=args.csv,
                   overwrite=args.overwrite)
    width = max(len(r["file"]) for r in rows)
    print(f"{'file':<{width}}  {'class':<16} probability")
    for r in rows:
        print(f"{r['file'] if r['rank'] == 1 else '':<{width}}  {r['class']:<16} {r['probability']:.4f}")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="lacnn-zoo", description="Layer-attended CNNs and their baselines.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="print the full traceback of an unexpected error")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name, **kwargs):
        return sub.add_parser(name, parents=[common], **kwargs)

    t = add("train", help="train a model (default: the main job on the embedded digits)")
    t.add_argument("--model", help="registered model name (see `lacnn-zoo list`)")
    t.add_argument("--dataset", help="'digits' (embedded, default), a folder with one subfolder of images per "
                                     "class, or a TFDS name such as cifar10")
    t.add_argument("--epochs", type=int)
    t.add_argument("--batch-size", type=int)
    t.add_argument("--recipe", choices=["default", "he2016", "zagoruyko2016", "bello2019"],
                   help="a paper's training recipe (default: AdamW + cosine, fast on digits); the options below "
                        "override it")
    t.add_argument("--optimizer", choices=["sgd", "adamw", "adam"])
    t.add_argument("--lr", type=float, help="peak learning rate")
    t.add_argument("--momentum", type=float, help="SGD momentum")
    t.add_argument("--nesterov", action=argparse.BooleanOptionalAction, default=None, help="Nesterov momentum")
    t.add_argument("--weight-decay", type=float, help="decoupled weight decay (kernels only)")
    t.add_argument("--schedule", choices=["cosine", "step", "constant"])
    t.add_argument("--milestones", type=float, nargs="+", metavar="M",
                   help="step schedule: fractions of training (0.5 0.75) or epochs (60 120 160)")
    t.add_argument("--decay-factor", type=float, help="step schedule: multiply the rate by this at each milestone")
    t.add_argument("--warmup-epochs", type=float, help="linear warm-up from 0 (fractions allowed)")
    t.add_argument("--label-smoothing", type=float)
    t.add_argument("--clipnorm", type=float, help="clip each gradient to this norm")
    t.add_argument("--ema", action=argparse.BooleanOptionalAction, default=None,
                   help="keep an exponential moving average of the weights (Keras' use_ema)")
    t.add_argument("--precision", choices=["float32", "mixed_bfloat16", "mixed_float16"],
                   help="Keras dtype policy while training (weights and logits stay float32)")
    t.add_argument("--distribute", choices=["none", "mirrored", "multi-worker"], default="none",
                   help="data-parallel training: mirrored (all local GPUs; JAX: DataParallel) or multi-worker "
                        "(TF_CONFIG; JAX: KERAS_DISTRIBUTION_* variables); the batch size is global")
    t.add_argument("--scale-lr", action="store_true", default=None,
                   help="multiply the learning rate by the number of replicas (linear scaling rule)")
    t.add_argument("--seed", type=int)
    t.add_argument("--set", action="append", type=parse_override, metavar="KNOB=VALUE",
                   help="model override, repeatable, e.g. --set mixing=beta --set 'widths=(16,32,64)'")
    t.add_argument("--output-dir", help="run folder (default runs/<model>-<dataset>-seed<seed>)")
    t.add_argument("--resume", action="store_true", help="continue the unfinished run in --output-dir")
    t.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    t.add_argument("--data-dir", help="TFDS data_dir holding prepared data")
    t.add_argument("--download", action="store_true", help="let TFDS download the data set (needs network)")
    t.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"), help="resize TFDS images")
    t.add_argument("--augment", choices=AUGMENTS,
                   help="training augmentation (TFDS, folders): none, crop-flip (pad 1/8, random crop, flip), "
                        "randaugment (crop-flip + Keras RandAugment); default: the recipe's")
    t.add_argument("--mixup", type=float, metavar="ALPHA", help="MixUp with Beta(ALPHA, ALPHA) weights (0: off)")
    t.add_argument("--cutmix", type=float, metavar="ALPHA",
                   help="CutMix with Beta(ALPHA, ALPHA) areas (0: off); with --mixup, half the batches each")
    t.add_argument("--random-erasing", type=float, metavar="P", help="erase a random patch with probability P")
    t.add_argument("--validation-fraction", type=float, help="share of the data held out for validation (0.1)")
    t.add_argument("--test-fraction", type=float, help="share held out for the test (0.2; folders and TFDS sets "
                                                       "without a test split)")
    t.add_argument("--train-split", help="TFDS split to train on (default 'train')")
    t.add_argument("--test-split", help="TFDS split to test on (default 'test'; sets without one carve it from "
                                        "train)")
    t.add_argument("--init-weights", metavar="FILE",
                   help="initialise from a .keras file (layers matched by name) or a same-architecture .weights.h5")
    t.add_argument("--freeze-backbone", action="store_true",
                   help="train only the head (layer-attention head, or pooling + classifier)")
    t.add_argument("--verbose", default="auto", type=_verbosity, help="Keras fit verbosity: auto, 0, 1 or 2")
    t.set_defaults(func=_train)

    ls = add("list", help="list registered models")
    ls.add_argument("pattern", nargs="?", help="wildcard, e.g. 'resnet*'")
    ls.add_argument("--family")
    ls.add_argument("--no-params", dest="params", action="store_false",
                    help="skip building each model to count its parameters (faster)")
    ls.add_argument("--num-classes", type=int, default=10)
    ls.set_defaults(func=_list)

    i = add("info", help="a model's record, knobs and parameter count")
    i.add_argument("name")
    i.add_argument("--memory-estimate", action="store_true",
                   help="predicted training memory at batch 128 (residual, wide and AA families)")
    i.set_defaults(func=_info)

    b = add("bench", help="params, FLOPs, throughput, memory, overhead vs backbone")
    b.add_argument("patterns", nargs="*",
                   help="model names or wildcards, e.g. 'lacnn_*'; with --backbone: mechanisms (default all four)")
    b.add_argument("--input-shape", type=int, nargs=3, default=(32, 32, 3), metavar=("H", "W", "C"))
    b.add_argument("--batch-size", type=int, default=128)
    b.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds (median reported)")
    b.add_argument("--steps", type=int, default=5, help="training steps per round")
    b.add_argument("--backbone", nargs="+", metavar="NAME",
                   help="keras.applications backbones (e.g. ResNet50V2): each mechanism's head against the bare "
                        "backbone with a pooled linear head")
    b.add_argument("--taps", default="blocks", choices=["blocks", "stages"], help="taps of --backbone")
    b.add_argument("--precision", choices=["mixed_bfloat16", "mixed_float16"],
                   help="time each model under this dtype policy against the same model in float32")
    b.add_argument("--memory", action="store_true", help="also measure peak training memory (child processes)")
    b.add_argument("--csv", help="also write the table as CSV")
    b.set_defaults(func=_bench)

    c = add("compare", help="train a set of models under one recipe and compare them")
    c.add_argument("patterns", nargs="*", help="model names or wildcards (default: the comparison set)")
    c.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    c.add_argument("--epochs", type=int, default=20)
    c.add_argument("--dataset", default="digits")
    c.add_argument("--target", type=float, default=0.95, help="validation accuracy for 'epochs to reach'")
    c.add_argument("--out", default="runs/compare")
    c.add_argument("--set", action="append", type=parse_override, metavar="KNOB=VALUE",
                   help="override for every model that has the knob, e.g. --set backbone=MobileNetV3Small")
    c.add_argument("--data-dir", help="TFDS data_dir holding prepared data")
    c.add_argument("--download", action="store_true", help="let TFDS download the data set (needs network)")
    c.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"), help="resize images")
    c.add_argument("--augment", choices=AUGMENTS, help="training augmentation, as for train")
    c.set_defaults(func=_compare)

    st = add("study", help="experiments testing the paper's predictions; 'depth': the depth study (issue 13)")
    st.add_argument("study", choices=["depth"], help="which study: depth (plain, ResNets and the four mechanisms "
                                                      "at depths 8/20/56, seeds 0-2)")
    st.add_argument("--quick", action="store_true", help="a small version: depths 8 20, seeds 0 1, 3 epochs, "
                                                         "plain, resnet_add, static_vector, dynamic_recurrent")
    st.add_argument("--variants", help="comma-separated subset of plain, resnet_add, resnet_beta, resnet_projection, "
                                       "lacnn_innate_static, lacnn_static_vector, lacnn_self_attention, "
                                       "lacnn_dynamic_recurrent (must include plain)")
    st.add_argument("--depths", type=int, nargs="+", help="depths D = 6n + 2 (default 8 20 56)")
    st.add_argument("--seeds", type=int, nargs="+", help="default 0 1 2")
    st.add_argument("--epochs", type=int, help="default 6 (quick: 3)")
    st.add_argument("--widths", type=int, nargs=3, metavar=("W1", "W2", "W3"), help="filters per stage (8 16 32)")
    st.add_argument("--dataset", default="digits", help="'digits' (embedded), an image folder or a TFDS name")
    st.add_argument("--out", default="runs/depth-study")
    st.add_argument("--robustness-examples", type=int, default=1000, help="test images for the lesion accuracies")
    st.add_argument("--data-dir", help="TFDS data_dir holding prepared data")
    st.add_argument("--download", action="store_true", help="let TFDS download the data set (needs network)")
    st.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"), help="resize images")
    st.add_argument("--augment", choices=AUGMENTS, help="training augmentation, as for train")
    st.set_defaults(func=_study)

    e = add("evaluate", help="top-1 (top-5) accuracy and loss of a .keras file or run folder on a data set")
    e.add_argument("model", metavar="MODEL_OR_RUN", help="a .keras file or a run folder (its best.keras)")
    e.add_argument("--dataset", help="'digits', a folder of class subfolders or a TFDS name (default: the run's)")
    e.add_argument("--split", default="test", choices=["test", "validation", "train"])
    e.add_argument("--seed", type=int, help="the split's seed (default: the run's)")
    e.add_argument("--batch-size", type=int, default=64)
    e.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"), help="resize (default: the run's)")
    e.add_argument("--data-dir", help="TFDS data_dir holding prepared data")
    e.add_argument("--download", action="store_true", help="let TFDS download the data set (needs network)")
    e.add_argument("--out", metavar="FILE", help="also write the result as JSON")
    e.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    e.set_defaults(func=_evaluate)

    p = add("predict", help="classify image files with a run's recorded preprocessing")
    p.add_argument("model", metavar="MODEL_OR_RUN", help="a run folder, or its best.keras")
    p.add_argument("inputs", nargs="+", metavar="IMAGE_OR_FOLDER", help="image files and/or folders of images")
    p.add_argument("--top-k", type=int, default=5, help="classes per image (at most the number of classes)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--csv", metavar="FILE", help="also write file, rank, class_index, class, probability as CSV")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --csv file")
    p.set_defaults(func=_predict)

    args = parser.parse_args(argv)
    return run_command("lacnn-zoo", args.func, args)


if __name__ == "__main__":
    sys.exit(main())
