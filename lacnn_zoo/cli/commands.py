"""The `lacnn-zoo` subcommands: each takes the parsed arguments and returns the exit status.

Each imports the library inside the function: the parser (and `lacnn-zoo list`) must not load Keras.
"""

import fnmatch
import json
import os
import sys

from lacnn_zoo import launch
from lacnn_zoo.io import printable

# Lazy imports: each command imports the library when it runs, so `--help` and `lacnn-zoo list` start without
# Keras and TensorFlow.

CATALOGUE = os.path.join(os.path.dirname(os.path.dirname(__file__)), "models", "catalogue.json")


def train(args):
    from lacnn_zoo import training
    from lacnn_zoo.training.run_folder import resume_arguments

    if args.resume and not args.output_dir:
        raise ValueError("--resume needs --output-dir (the folder of the run to continue).")
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
        ema=args.ema, ema_decay=args.ema_decay, precision=args.precision, scale_lr=args.scale_lr,
        bn_momentum=args.bn_momentum, validation_fraction=args.validation_fraction,
        test_fraction=args.test_fraction, train_split=args.train_split, test_split=args.test_split,
    )
    if args.resume:  # what was not asked is what the run was started with
        asked = resume_arguments(args.output_dir, asked)
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
    if (m.get("config") or {}).get("ema"):  # best.keras is the better of two models: say which
        kept = "averaged (EMA)" if m.get("best_weights") == "ema" else "raw"
        print(f"best.keras holds the {kept} weights, the better of the raw and the averaged model on validation "
              f"(accuracy {m['best_val_accuracy']:.4f}).")
    if m.get("warnings") and args.verbose == 0:  # training printed nothing: the summary shows them
        from lacnn_zoo.training.diagnostics import lines

        print("\n".join(lines(m["warnings"])))
    elif m.get("warnings"):  # printed at the end of training, just above; counted so the summary does not hide them
        print(f"{len(m['warnings'])} warning(s) above, also in metrics.json: "
              f"{', '.join(w['kind'] for w in m['warnings'])}.")
    return 0


def listing(args):
    """The models from the static catalogue (no Keras); building them only for another --num-classes."""
    try:
        with open(CATALOGUE) as f:
            catalogue = json.load(f)
    except FileNotFoundError:
        catalogue = None
    if catalogue is None or (args.params and args.num_classes != catalogue["num_classes"]):
        return _listing_built(args)
    pattern = args.pattern or "*"
    rows = sorted((m for m in catalogue["models"] if fnmatch.fnmatchcase(m["name"], pattern)
                   and (args.family is None or m["family"] == args.family)), key=lambda m: m["name"])
    return _print_models(args, [(m["name"], m["family"], m["params"], m["description"]) for m in rows])


def _listing_built(args):
    launch.start_quietly()
    from lacnn_zoo import list_models, model_info

    rows = []
    for name in list_models(args.pattern or "*", family=args.family):
        info = model_info(name)
        params = info.num_params(num_classes=args.num_classes) if args.params else None
        rows.append((name, info.family, params, info.description.splitlines()[0] if info.description else ""))
    return _print_models(args, rows)


def _print_models(args, rows):
    if not rows:
        print(f"No model matches {args.pattern!r}.", file=sys.stderr)
        return 1
    header = f"{'name':<28} {'family':<16} {'params':>12}  description"
    print(header)
    print("-" * len(header))
    for name, family, params, description in rows:
        params = f"{params:,}" if args.params else "-"
        print(f"{name:<28} {family:<16} {params:>12}  {description}")
    return 0


def info(args):
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


def bench(args):
    from lacnn_zoo.experiments.bench import main_bench

    return main_bench(args)


def compare(args):
    from lacnn_zoo.experiments.compare import compare, print_rows

    rows = compare(args.patterns or None, seeds=args.seeds, epochs=args.epochs, dataset=args.dataset,
                   target=args.target, out_dir=args.out, overrides=dict(args.set) if args.set else None,
                   data_dir=args.data_dir, download=args.download, augment=args.augment,
                   image_size=tuple(args.image_size) if args.image_size else None)
    print()
    print_rows(rows)
    print(f"\nTables and plots in {args.out}; `lacnn-zoo report {args.out}` puts the runs on one page.")
    return 0


def study(args):
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


def evaluate(args):
    from lacnn_zoo.training.inference import evaluate

    r = evaluate(args.model, args.dataset, seed=args.seed, batch_size=args.batch_size,
                 image_size=tuple(args.image_size) if args.image_size else None, data_dir=args.data_dir,
                 download=args.download, split=args.split, out=args.out, overwrite=args.overwrite)
    top5 = f", top-5 {r['top5']:.4f}" if "top5" in r else ""
    print(f"{r['model']} on {r['dataset']} ({r['split']}, {r['num_examples']} images): "
          f"top-1 {r['top1']:.4f}{top5}, loss {r['loss']:.4f}" + (f". Written to {args.out}" if args.out else ""))
    return 0


def predict(args):
    from lacnn_zoo.training.inference import predict

    rows = predict(args.model, args.inputs, top_k=args.top_k, batch_size=args.batch_size, csv=args.csv,
                   overwrite=args.overwrite)
    width = max(len(r["file"]) for r in rows)
    print(f"{'file':<{width}}  {'class':<16} probability")
    for r in rows:
        print(f"{r['file'] if r['rank'] == 1 else '':<{width}}  {r['class']:<16} {r['probability']:.4f}")
    return 0


def report(args):
    import time

    from lacnn_zoo.experiments.report import report

    start = getattr(args, "started", None) or time.perf_counter()  # the command's start (main sets it)
    runs = args.run_dir if isinstance(args.run_dir, str) or len(args.run_dir) > 1 else args.run_dir[0]
    page = report(runs, dataset=args.dataset, out=args.out, overwrite=args.overwrite, examples=args.examples,
                  image_size=tuple(args.image_size) if args.image_size else None, data_dir=args.data_dir,
                  download=args.download, limit=args.limit)
    print(printable(f"Report written to {page} in {time.perf_counter() - start:.1f} s (since the command started, "
                    "loading TensorFlow included); its figures are PNG files "
                    "beside it."))
    return 0


def digits_folder(args):
    from lacnn_zoo.data import write_digits_folder

    written = write_digits_folder(args.dir, size=args.size, per_class=args.per_class, channels=args.channels,
                                  seed=args.seed)
    print(f"{written} images of the embedded digits written to {printable(args.dir)} (one subfolder per class, "
          f"{args.size}x{args.size}, {args.channels} channel{'s' if args.channels > 1 else ''}).")
    return 0
