"""The folder of a search project (`python -m tuning`, `lacnn-zoo tune`): the one place its file names are
spelled, as `RunFolder` is for a training run. The search (tuning/search.py) writes these files and the report
(`lacnn-zoo report PROJECT`) reads them, both through `SearchProject`.

    project/
      oracle.json, tuner*.json     Keras Tuner's state (an interrupted search resumes from it)
      trial_<id>/trial.json        Keras Tuner's record of each trial
      trial_<id>/executions.json   every execution's best-epoch values, history and warnings (the zoo's)
      search.json                  the search space the project was started with
      best.keras, metrics.json     the best model and what export and deployment read beside it (as a run's)
      mechanisms.json/.csv/.png    the table per mechanism, the trials and the best trial
      tensorboard/, report/        Keras Tuner's HParams logs; `lacnn-zoo report`'s page
"""

import glob
import os

from lacnn_zoo.training.run_folder import BEST, METRICS, REPORT, TENSORBOARD

__all__ = ["EXECUTIONS", "ORACLE", "SPACE", "TABLE", "TABLE_CSV", "TABLE_PLOT", "TRIAL", "SearchProject"]

ORACLE = "oracle.json"  # Keras Tuner's: its presence makes a folder a search project
TRIAL = "trial.json"  # Keras Tuner's, in each trial's folder
_TRIAL_PREFIX = "trial_"
EXECUTIONS = "executions.json"  # in each trial's folder
SPACE = "search.json"
TABLE = "mechanisms.json"  # the table per mechanism (and its .csv and .png below)
TABLE_CSV = "mechanisms.csv"
TABLE_PLOT = "mechanisms.png"
_ENTRIES = frozenset({ORACLE, BEST, METRICS, TABLE, TABLE_CSV, TABLE_PLOT, SPACE, TENSORBOARD, REPORT, "chief.json"})


class SearchProject:
    """A search project's folder: `SearchProject(path).file(TABLE)`, `.trial_files()`, `.is_project()`.

    Args:
        path: the project folder's path (a string or path-like; it need not exist yet).
    """

    def __init__(self, path):
        self.path = os.fspath(path)

    def __repr__(self):
        return f"SearchProject({self.path!r})"

    def file(self, name):
        return os.path.join(self.path, name)

    @property
    def best(self):
        return self.file(BEST)

    @property
    def metrics(self):
        return self.file(METRICS)

    def is_project(self):
        return os.path.isfile(self.file(ORACLE))

    @staticmethod
    def is_entry(name):
        """Whether `name` is an entry Keras Tuner, the search or the report writes into a project folder
        (`--overwrite` replaces nothing else)."""
        return (name in _ENTRIES or name.startswith(_TRIAL_PREFIX)
                or (name.startswith("tuner") and name.endswith(".json")))

    def trial_files(self):
        """Keras Tuner's trial.json of every trial folder, sorted."""
        return sorted(glob.glob(os.path.join(self.path, f"{_TRIAL_PREFIX}*", TRIAL)))

    @staticmethod
    def executions_file(trial_dir):
        return os.path.join(trial_dir, EXECUTIONS)
