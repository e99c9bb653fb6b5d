"""`lacnn-zoo` command line: train, list, info, bench, compare, study, evaluate, predict, tune, export.

`parser` builds the tree from Keras-free tables and `commands` holds the subcommands, each importing the
library only when it runs: `lacnn-zoo --help`, `lacnn-zoo <command> --help` and `lacnn-zoo list` start without
TensorFlow (the package skips its eager registration on this command line, see `lacnn_zoo.launch`); every
other command first registers the zoo, with TensorFlow's start-up chatter filtered out.
"""

import sys
import time

from lacnn_zoo import launch
from lacnn_zoo.cli.parser import build_parser
from lacnn_zoo.errors import run_command
from lacnn_zoo.options import parse_override  # noqa: F401  (its former home)

# Commands that need neither Keras nor the registry (`list` builds models only for another --num-classes).
NO_REGISTRATION = ("list",)


def main(argv=None):
    args = build_parser().parse_args(argv)
    args.started = time.perf_counter()  # what the user waits for starts here: loading TensorFlow included
    if getattr(args, "run", None) is not None:  # tune, export: their own runners (quiet start, one-line errors)
        return args.run(args)
    if args.command not in NO_REGISTRATION:
        launch.start_quietly()
    return run_command("lacnn-zoo", args.func, args)


if __name__ == "__main__":
    sys.exit(main())
