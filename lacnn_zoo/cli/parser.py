"""The `lacnn-zoo` parser tree, built from the library's Keras-free tables (`lacnn_zoo.options`,
`tuning.options`, `export.options`): building it, and so `--help`, loads neither Keras nor TensorFlow."""

import argparse

from export import __main__ as export_command
from lacnn_zoo import __version__
from lacnn_zoo.cli import commands
from lacnn_zoo.options import (
    AUGMENTS,
    DISTRIBUTES,
    OPTIMIZERS,
    PRECISIONS,
    RECIPES,
    SCHEDULES,
    TAP_RULES,
    VARIANTS,
    ArgumentParser,
    bounded,
    milestone,
    parse_override,
)
from tuning import __main__ as tune_command


def _verbosity(text):
    if text in ("auto", "0", "1", "2"):
        return text if text == "auto" else int(text)
    raise argparse.ArgumentTypeError(f"--verbose takes auto, 0, 1 or 2; received {text!r}.")


def add_data_options(parser, *, dataset_help, dataset_default=None, image_size_help="resize images",
                     augment_help="training augmentation, as for train"):
    """--dataset, --data-dir, --download, --image-size and (unless augment_help is None) --augment."""
    parser.add_argument("--dataset", default=dataset_default, help=dataset_help)
    parser.add_argument("--data-dir", help="TFDS data_dir holding prepared data")
    parser.add_argument("--download", action="store_true", help="let TFDS download the data set (needs network)")
    parser.add_argument("--image-size", type=bounded("image_side"), nargs=2, metavar=("H", "W"), help=image_size_help)
    if augment_help is not None:
        parser.add_argument("--augment", choices=AUGMENTS, help=augment_help)


def add_override_option(parser, help):
    parser.add_argument("--set", action="append", type=parse_override, metavar="KNOB=VALUE", help=help)


def _train_options(t):
    t.add_argument("--model", help="registered model name (see `lacnn-zoo list`)")
    add_data_options(t, dataset_help="'digits' (embedded, default), a folder with one subfolder of images per "
                                     "class, or a TFDS name such as cifar10",
                     image_size_help="resize the images (TFDS data sets and image folders)",
                     augment_help="training augmentation (TFDS, folders): none, crop-flip (pad 1/8, random crop, "
                                  "flip), randaugment (crop-flip + Keras RandAugment); default: the recipe's")
    t.add_argument("--epochs", type=bounded("epochs"))
    t.add_argument("--batch-size", type=bounded("batch_size"))
    t.add_argument("--recipe", choices=tuple(RECIPES),
                   help="a paper's training recipe (default: AdamW + cosine, fast on digits); the options below "
                        "override it")
    t.add_argument("--optimizer", choices=OPTIMIZERS)
    t.add_argument("--lr", type=bounded("learning_rate"), help="peak learning rate")
    t.add_argument("--momentum", type=bounded("momentum"), help="SGD momentum")
    t.add_argument("--nesterov", action=argparse.BooleanOptionalAction, default=None, help="Nesterov momentum")
    t.add_argument("--weight-decay", type=bounded("weight_decay"), help="decoupled weight decay (kernels only)")
    t.add_argument("--schedule", choices=SCHEDULES)
    t.add_argument("--milestones", type=milestone, nargs="+", metavar="M",
                   help="step schedule: fractions of training (0.5 0.75) or epochs (60 120 160)")
    t.add_argument("--decay-factor", type=bounded("decay_factor"),
                   help="step schedule: multiply the rate by this at each milestone")
    t.add_argument("--warmup-epochs", type=bounded("warmup_epochs"), help="linear warm-up from 0 (fractions allowed)")
    t.add_argument("--label-smoothing", type=bounded("label_smoothing"))
    t.add_argument("--clipnorm", type=bounded("clipnorm"), help="clip each gradient to this norm")
    t.add_argument("--ema", action=argparse.BooleanOptionalAction, default=None,
                   help="also validate an exponential moving average of the weights (Keras' use_ema, with batch-norm "
                        "statistics of its own); best.keras is the better of it and the raw model")
    t.add_argument("--ema-decay", type=bounded("ema_decay"), metavar="D",
                   help="with --ema: the average's decay (0.99); it spans about 1/(1-D) optimizer steps")
    t.add_argument("--precision", choices=PRECISIONS,
                   help="Keras dtype policy while training (weights and logits stay float32)")
    t.add_argument("--distribute", choices=DISTRIBUTES, default="none",
                   help="data-parallel training: mirrored (all local GPUs; JAX: DataParallel) or multi-worker "
                        "(TF_CONFIG; JAX: KERAS_DISTRIBUTION_* variables); the batch size is global")
    t.add_argument("--scale-lr", action="store_true", default=None,
                   help="multiply the learning rate by the number of replicas (linear scaling rule)")
    t.add_argument("--seed", type=bounded("seed"))
    add_override_option(t, "model override, repeatable, e.g. --set mixing=beta --set 'widths=(16,32,64)'")
    t.add_argument("--output-dir", help="run folder (default runs/<model>-<dataset>-seed<seed>)")
    t.add_argument("--resume", action="store_true", help="continue the unfinished run in --output-dir")
    t.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    t.add_argument("--mixup", type=bounded("alpha"), metavar="ALPHA",
                   help="MixUp with Beta(ALPHA, ALPHA) weights (0: off)")
    t.add_argument("--cutmix", type=bounded("alpha"), metavar="ALPHA",
                   help="CutMix with Beta(ALPHA, ALPHA) areas (0: off); with --mixup, half the batches each")
    t.add_argument("--random-erasing", type=bounded("probability"), metavar="P",
                   help="erase a random patch with probability P")
    t.add_argument("--validation-fraction", type=bounded("fraction"),
                   help="share of the data held out for validation (0.1)")
    t.add_argument("--test-fraction", type=bounded("fraction"),
                   help="share held out for the test (0.2; folders and TFDS sets without a test split)")
    t.add_argument("--train-split", help="TFDS split to train on (default 'train')")
    t.add_argument("--test-split", help="TFDS split to test on (default 'test'; sets without one carve it from "
                                        "train)")
    t.add_argument("--init-weights", metavar="FILE",
                   help="initialise from a .keras file (layers matched by name) or a same-architecture .weights.h5")
    t.add_argument("--bn-momentum", type=bounded("momentum"), metavar="M",
                   help="momentum of every BatchNormalization, backbone included (Keras' convention: moving = M * "
                        "moving + (1 - M) * batch; keras.applications use 0.99 or 0.999; 0.9 suits short runs)")
    t.add_argument("--freeze-backbone", action="store_true",
                   help="train only the head (layer-attention head, or pooling + classifier)")
    t.add_argument("--verbose", default="auto", type=_verbosity, help="Keras fit verbosity: auto, 0, 1 or 2")


def _list_and_info_options(ls, i):
    ls.add_argument("pattern", nargs="?", help="wildcard, e.g. 'resnet*'")
    ls.add_argument("--family")
    ls.add_argument("--no-params", dest="params", action="store_false",
                    help="leave out the parameter counts (with --num-classes: skip building each model)")
    ls.add_argument("--num-classes", type=bounded("num_classes"), default=10,
                    help="classifier width the counts are for (10, the default, is read from the catalogue; "
                         "another builds each model)")
    i.add_argument("name")
    i.add_argument("--memory-estimate", action="store_true",
                   help="predicted training memory at batch 128 (residual, wide and AA families)")


def _bench_options(b):
    b.add_argument("patterns", nargs="*",
                   help="model names or wildcards, e.g. 'lacnn_*'; with --backbone: mechanisms (default all four)")
    b.add_argument("--input-shape", type=bounded("size"), nargs=3, default=(32, 32, 3), metavar=("H", "W", "C"))
    b.add_argument("--batch-size", type=bounded("batch_size"), default=128)
    b.add_argument("--rounds", type=bounded("rounds"), default=5, help="interleaved timing rounds (median reported)")
    b.add_argument("--steps", type=bounded("steps"), default=5, help="training steps per round")
    b.add_argument("--backbone", nargs="+", metavar="NAME",
                   help="keras.applications backbones (e.g. ResNet50V2): each mechanism's head against the bare "
                        "backbone with a pooled linear head")
    b.add_argument("--taps", default="blocks", choices=TAP_RULES, help="taps of --backbone")
    b.add_argument("--precision", choices=[p for p in PRECISIONS if p != "float32"],
                   help="time each model under this dtype policy against the same model in float32")
    b.add_argument("--memory", action="store_true", help="also measure peak training memory (child processes)")
    b.add_argument("--csv", help="also write the table as CSV")


def _compare_and_study_options(c, st):
    c.add_argument("patterns", nargs="*", help="model names or wildcards (default: the comparison set)")
    c.add_argument("--seeds", type=bounded("seed"), nargs="+", default=[0, 1, 2])
    c.add_argument("--epochs", type=bounded("epochs"), default=20)
    add_data_options(c, dataset_default="digits", dataset_help="'digits' (embedded, default), an image folder or a "
                                                              "TFDS name")
    c.add_argument("--target", type=bounded("accuracy"), default=0.95, help="validation accuracy for 'epochs to reach'")
    c.add_argument("--out", default="runs/compare")
    add_override_option(c, "override for every model that has the knob, e.g. --set backbone=MobileNetV3Small")

    st.add_argument("study", choices=["depth"], help="which study: depth (plain, ResNets and the four mechanisms "
                                                      "at depths 8/20/56, seeds 0-2)")
    st.add_argument("--quick", action="store_true", help="a small version: depths 8 20, seeds 0 1, 3 epochs, "
                                                         "plain, resnet_add, static_vector, dynamic_recurrent")
    st.add_argument("--variants", help=f"comma-separated subset of {', '.join(VARIANTS)} (must include plain)")
    st.add_argument("--depths", type=bounded("depth"), nargs="+", help="depths D = 6n + 2 (default 8 20 56)")
    st.add_argument("--seeds", type=bounded("seed"), nargs="+", help="default 0 1 2")
    st.add_argument("--epochs", type=bounded("epochs"), help="default 6 (quick: 3)")
    st.add_argument("--widths", type=bounded("size"), nargs=3, metavar=("W1", "W2", "W3"),
                    help="filters per stage (8 16 32)")
    add_data_options(st, dataset_default="digits", dataset_help="'digits' (embedded), an image folder or a TFDS name")
    st.add_argument("--out", default="runs/depth-study")
    st.add_argument("--robustness-examples", type=bounded("examples"), default=1000,
                    help="test images for the lesion accuracies (at most; 1000)")


def _evaluate_and_predict_options(e, p):
    e.add_argument("model", metavar="MODEL_OR_RUN", help="a .keras file or a run folder (its best.keras)")
    add_data_options(e, dataset_help="'digits', a folder of class subfolders or a TFDS name (default: the run's)",
                     image_size_help="resize (default: the run's)", augment_help=None)
    e.add_argument("--split", default="test", choices=["test", "validation", "train"])
    e.add_argument("--seed", type=bounded("seed"), help="the split's seed (default: the run's)")
    e.add_argument("--batch-size", type=bounded("batch_size"), default=64)
    e.add_argument("--out", metavar="FILE", help="also write the result as JSON")
    e.add_argument("--overwrite", action="store_true", help="replace an existing --out file")

    p.add_argument("model", metavar="MODEL_OR_RUN", help="a run folder, or its best.keras")
    p.add_argument("inputs", nargs="+", metavar="IMAGE_OR_FOLDER", help="image files and/or folders of images")
    p.add_argument("--top-k", type=bounded("top_k"), default=5,
                   help="classes per image (at most the number of classes)")
    p.add_argument("--batch-size", type=bounded("batch_size"), default=64)
    p.add_argument("--csv", metavar="FILE", help="also write file, rank, class_index, class, probability as CSV")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --csv file")


def _report_options(r):
    r.add_argument("run_dir", metavar="RUN", nargs="+",
                   help="a run folder of `lacnn-zoo train`, a tuning project folder, a `lacnn-zoo compare` folder "
                        "(its runs compared), or two or more run folders to compare (with --out)")
    r.add_argument("--dataset", help="test on this data set instead of the run's own ('digits', a folder, a TFDS "
                                     "name)")
    r.add_argument("--data-dir", help="TFDS data_dir holding prepared data")
    r.add_argument("--download", action="store_true", help="let TFDS download the data set (needs network)")
    r.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"),
                   help="resize the test images of --dataset (a folder or TFDS data set)")
    r.add_argument("--examples", type=int, help="highest-loss test images shown (16; 1 to 256)")
    r.add_argument("--limit", type=int, metavar="N",
                   help="score only the first N test images (default: all; the page says so)")
    r.add_argument("--out", metavar="DIR", help="the report folder (default RUN/report)")
    r.add_argument("--overwrite", action="store_true", help="replace an existing report folder")


def _digits_folder_options(p):
    p.add_argument("dir", metavar="DIR", help="the folder to create (it must not exist, or be empty)")
    p.add_argument("--size", type=bounded("image_side"), default=32, help="image side in pixels (default 32; 8 "
                                                                          "keeps the scans' size)")
    p.add_argument("--per-class", type=int, help="images per class, drawn with --seed (default: all 1797 images)")
    p.add_argument("--channels", type=int, choices=(1, 3), default=1, help="1 (grayscale, default) or 3 (RGB)")
    p.add_argument("--seed", type=bounded("seed"), default=0, help="the seed of the --per-class draw (default 0)")


def build_parser():
    """The whole tree; each subcommand's parser carries `func` (its command) or, for the commands that have
    their own entry point (tune, export), `run` (their runner, which reports errors itself)."""
    parser = ArgumentParser(prog="lacnn-zoo", description="Layer-attended CNNs and their baselines.")
    parser.add_version(__version__)
    common = ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="print the full traceback of an unexpected error")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name, func, **kwargs):
        p = sub.add_parser(name, parents=[common], **kwargs)
        p.set_defaults(func=func)
        return p

    _train_options(add("train", commands.train, help="train a model (default: the main job on the embedded digits)"))
    _list_and_info_options(add("list", commands.listing, help="list registered models"),
                           add("info", commands.info, help="a model's record, knobs and parameter count"))
    _bench_options(add("bench", commands.bench, help="params, FLOPs, throughput, memory, overhead vs backbone"))
    _compare_and_study_options(
        add("compare", commands.compare, help="train a set of models under one recipe and compare them"),
        add("study", commands.study, help="experiments testing the paper's predictions; 'depth': the depth study"))
    _evaluate_and_predict_options(
        add("evaluate", commands.evaluate,
            help="top-1 (top-5) accuracy and loss of a .keras file or run folder on a data set"),
        add("predict", commands.predict, help="classify image files with a run's recorded preprocessing"))
    _report_options(add("report", commands.report, help="one page (report.html) of what a trained run learned"))
    _digits_folder_options(add("digits-folder", commands.digits_folder,
                               help="write the embedded digits as a folder of PNG images, one subfolder per class"))
    # The search and the export keep their own entry points (python -m tuning / export); these are the same
    # commands: the same options (their own builders) and the same runners.
    tune = sub.add_parser("tune", help="search the attention mechanism with Keras Tuner (as python -m tuning)",
                          description=tune_command.__doc__)
    tune_command.add_arguments(tune).set_defaults(run=lambda args: tune_command.run(args, prog="lacnn-zoo tune"))
    export = sub.add_parser("export", help="export a trained .keras model (as python -m export)",
                            description=export_command.DESCRIPTION)
    export_command.add_arguments(export).set_defaults(
        run=lambda args: export_command.run(args, prog="lacnn-zoo export"))
    return parser
