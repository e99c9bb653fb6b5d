"""`python -m tuning` (also `lacnn-zoo-tune`, `lacnn-zoo tune`): search the attention mechanism with Keras Tuner."""

import sys

import lacnn_zoo.errors as errors  # not `from lacnn_zoo import errors`: the package's __getattr__ loads Keras
from lacnn_zoo import __version__, launch
from lacnn_zoo.options import AUGMENTS, ArgumentParser, bounded, parse_override
from tuning.options import CANDIDATES, OBJECTIVES, TUNERS


def add_arguments(parser):
    """The search's options on `parser` (shared by `python -m tuning` and `lacnn-zoo tune`)."""
    parser.add_argument("--mechanisms", help=f"comma-separated subset of: {', '.join(CANDIDATES)} (default: all)")
    parser.add_argument("--dataset", default="digits",
                        help="'digits' (embedded), a folder of class subfolders, or a TFDS name (default: digits)")
    parser.add_argument("--tuner", default="random", choices=TUNERS, help="the search strategy (default: random)")
    parser.add_argument("--trials", type=bounded("trials"), default=20,
                        help="max trials (random and bayesian), at least one per mechanism (default: 20)")
    parser.add_argument("--epochs", type=bounded("epochs"), default=15,
                        help="epochs per trial (hyperband: max epochs) (default: 15)")
    parser.add_argument("--objective", default="val_accuracy",
                        help=f"one of {', '.join(OBJECTIVES)} (default: val_accuracy)")
    parser.add_argument("--executions-per-trial", type=bounded("executions_per_trial"), default=1, metavar="N",
                        help="train each trial N times (Keras Tuner's executions_per_trial): the score is their mean, "
                             "the table gives mean ± std (default: 1)")
    parser.add_argument("--directory", default="tuning_runs", help="the folder of search projects (default: "
                                                                    "tuning_runs)")
    parser.add_argument("--project-name", default="mechanisms",
                        help="a folder name inside --directory; re-running it resumes the search (default: mechanisms)")
    parser.add_argument("--seed", type=bounded("seed"), default=0, help="seed of the tuner and the split (default: 0)")
    parser.add_argument("--batch-size", type=bounded("batch_size"), default=64, help="training batch size (default: "
                                                                                       "64)")
    parser.add_argument("--overwrite", action="store_true", help="start afresh instead of resuming")
    parser.add_argument("--data-dir", help="TFDS data_dir")
    parser.add_argument("--download", action="store_true", help="let TFDS download (needs network)")
    parser.add_argument("--image-size", type=bounded("image_side"), nargs=2, metavar=("H", "W"),
                        help="resize images (TFDS, folders)")
    parser.add_argument("--augment", choices=AUGMENTS, help="training augmentation (TFDS, folders), as for train")
    parser.add_argument("--verbose", type=int, default=1, choices=[0, 1, 2], help="Keras' fit verbosity (default: 1)")
    parser.add_argument("--set", action="append", type=parse_override, metavar="KNOB=VALUE",
                        help="fixed knob for every searched model that has it, e.g. --set backbone=EfficientNetB0")
    parser.add_argument("--debug", action="store_true", help="print the full traceback of an unexpected error")
    return parser


def main(argv=None):
    parser = add_arguments(ArgumentParser(prog="python -m tuning", description=__doc__).add_version(__version__))
    return run(parser.parse_args(argv))


def run(args, prog="tuning"):
    """Run the parsed command: TensorFlow started quietly, expected failures in one line."""
    launch.start_quietly()
    return errors.run_command(prog, tune, args)


def tune(args):
    from tuning.search import print_table, run_search  # lazy: --help answers without Keras Tuner

    extra = {}
    if args.dataset == "digits":
        from lacnn_zoo.data import refuse_on_digits  # lazy: --help answers without NumPy and TensorFlow

        refuse_on_digits(data_dir=args.data_dir, download=args.download, image_size=args.image_size,
                         augment=args.augment)
    else:
        extra = {"data_dir": args.data_dir, "download": args.download,
                 "image_size": tuple(args.image_size) if args.image_size else None, "augment": args.augment}
    result = run_search(
        args.mechanisms, dataset=args.dataset, tuner=args.tuner, max_trials=args.trials, epochs=args.epochs,
        objective=args.objective, directory=args.directory, project_name=args.project_name, seed=args.seed,
        overwrite=args.overwrite, batch_size=args.batch_size, verbose=args.verbose,
        overrides=dict(args.set) if args.set else None, executions_per_trial=args.executions_per_trial, **extra,
    )
    if result is not None:  # None on a distributed worker
        print_table(result, args.objective)
    return 0


if __name__ == "__main__":
    sys.exit(main())
