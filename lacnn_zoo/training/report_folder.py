"""Which files of a report folder (`lacnn-zoo report`) the zoo wrote there: the report's marker lists them (an
earlier version's marker listed none: its fixed names then). The report writes through it, and the run folder
asks it before `train --overwrite` removes a run's `report/`, so it lives below both."""

import os

from lacnn_zoo.io import LOCK_NAME, OWNER_MARKER, is_temporary, owned_files, read_json

__all__ = ["LEGACY_FILES", "NUMBERS", "PAGE", "foreign_entries", "recorded_files"]

PAGE = "report.html"
NUMBERS = "report.json"  # the numbers behind the figures
# What a report of the earlier version (its marker lists no files) wrote, besides the attention figures that
# its report.json names.
LEGACY_FILES = frozenset({PAGE, NUMBERS, "learning_curves.png", "confusion.png", "top_losses.png",
                          "reliability.png", "layer_attention.png", "tap_lesions.png", "tuning_curves.png"})


def recorded_files(out):
    """The entries of `out` that lacnn-zoo wrote as a report (None: `out` is not a report lacnn-zoo wrote)."""
    files = owned_files(out, "report")
    if files == []:  # the earlier version's marker: its fixed names and the attention figures its numbers name
        try:
            attention = read_json(os.path.join(out, NUMBERS)).get("attention") or {}
            files = [*LEGACY_FILES, *(f"attention_{name}.png" for name in attention if isinstance(name, str))]
        except (OSError, ValueError, AttributeError):
            files = list(LEGACY_FILES)
    return None if files is None else {f for f in files if not os.path.isdir(os.path.join(out, f))}


def foreign_entries(out):
    """The entries of the report folder `out` that lacnn-zoo did not write as a report (all of them when `out`
    is not a report the zoo wrote): what `train --overwrite` must not remove with a run's `report/`."""
    recorded = recorded_files(out)
    entries = [e for e in os.listdir(out) if e not in (OWNER_MARKER, LOCK_NAME)
               and not (recorded is not None and is_temporary(e))]
    return sorted(e for e in entries if e not in (recorded or ()))
