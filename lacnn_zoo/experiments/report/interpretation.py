"""The report's measures and figures as a Python object, for a notebook (fastai's `ClassificationInterpretation`).

    from lacnn_zoo import Interpretation
    interp = Interpretation.from_run("runs/my-run")      # scores the run's test split once
    interp.most_confused()[:5]                           # [("8", "1", 4), ...]
    interp.per_class()["macro"]                          # {"precision": ..., "recall": ..., "f1": ...}
    fig = interp.plot_top_losses(9)                      # a matplotlib Figure

Every number is the one `lacnn-zoo report` writes into report.html and report.json for the same run and split.
"""

import numpy as np

from lacnn_zoo.data import unstandardise
from lacnn_zoo.experiments.report import figures, measures
from lacnn_zoo.models.layer_attended import tap_names
from lacnn_zoo.training.inference import predictions
from lacnn_zoo.training.monitor import is_layer_attended

__all__ = ["Interpretation"]


class Interpretation:
    """A trained model's predictions on a split, with the measures and figures of its report.

    Args:
        scored: the `lacnn_zoo.training.inference.Predictions` of the model on a split, with its inputs
            (`predictions(..., keep_inputs=True)`); `Interpretation.from_run` makes them.
    """

    def __init__(self, scored):
        if scored.inputs is None:
            raise ValueError("`scored` must keep its inputs (predictions(..., keep_inputs=True)): the top losses and "
                             "the lesions need the images.")
        if scored.log_p is None:
            raise ValueError("`scored` must keep its log-probabilities (predictions(..., keep_log_p=True), the "
                             "default).")
        self.scored = scored
        self.log_p = np.asarray(scored.log_p, "float64")
        self.labels = np.asarray(scored.labels, "int64")
        self.predicted = self.log_p.argmax(axis=-1)
        k = self.log_p.shape[-1]
        names = scored.preprocessing.get("class_names")
        self.class_names = list(names) if names and len(names) == k else [str(i) for i in range(k)]

    @classmethod
    def from_run(cls, run, dataset=None, *, split="test", image_size=None, data_dir=None, download=False,
                 limit=None):
        """Score a run's best.keras (or a `.keras` file) on a split of its data set, as the report does.

        Args:
            run: a run folder of `lacnn-zoo train`, or a `.keras` file.
            dataset: the data set to score on (default: the run's own, with its seed and split).
            split: 'test' (default), 'validation' or 'train'.
            image_size: `(height, width)` to resize the images of `dataset` to.
            data_dir: the TFDS data folder, for a TFDS `dataset`.
            download: let TFDS download `dataset`.
            limit: score only the first `limit` images of the split (an `Interpretation` keeps every scored
                image's input in memory, for its figures; `lacnn-zoo report` streams them).

        Returns:
            An `Interpretation`.
        """
        return cls(predictions(run, dataset, split=split, image_size=image_size, data_dir=data_dir,
                               download=download, keep_inputs=True, limit=limit))

    def confusion_matrix(self, normalise=False):
        """The confusion matrix.

        Args:
            normalise: False for counts; True for each row as shares of its class's images.

        Returns:
            A `(classes, classes)` NumPy array, rows the true class, columns the predicted one.
        """
        matrix = measures.confusion_matrix(self.labels, self.predicted, len(self.class_names))
        return measures.row_normalised(matrix) if normalise else matrix

    def per_class(self):
        """Precision, recall and F1 per class, and their macro averages.

        Returns:
            `{"classes": [...], "precision": [...], "recall": [...], "f1": [...], "macro": {...}}`, NaN where a
            measure is undefined (a class nothing was predicted as has no precision).
        """
        precision, recall = measures.precision_recall(self.confusion_matrix())
        f1 = measures.f1(precision, recall)
        return {"classes": self.class_names, "precision": precision, "recall": recall, "f1": f1,
                "macro": {"precision": measures.macro(precision), "recall": measures.macro(recall),
                          "f1": measures.macro(f1)}}

    def most_confused(self, min_val=1):
        """The pairs of classes the model mixes up (fastai's `most_confused`).

        Args:
            min_val: the fewest images a pair needs to be listed.

        Returns:
            A list of `(true class, predicted class, images)`, most images first.
        """
        return measures.most_confused(self.confusion_matrix(), self.class_names, least=min_val)

    def top_losses(self, k=16):
        """The `k` images with the highest loss.

        Args:
            k: how many.

        Returns:
            A list of dicts, highest loss first: `index` (in the split), `file` (for a folder data set), `true`,
            `predicted`, `probability` (of the predicted class) and `loss` (-log p of the true class).
        """
        files = (getattr(self.scored.data, "files", None) or {}).get(self.scored.split)
        probabilities = np.exp(self.log_p)
        return [{"index": int(i), **({"file": files[i]} if files else {}),
                 "true": self.class_names[self.labels[i]], "predicted": self.class_names[self.predicted[i]],
                 "probability": float(probabilities[i, self.predicted[i]]),
                 "loss": float(-self.log_p[i, self.labels[i]])}
                for i in measures.top_losses(self.log_p, self.labels, k)]

    def calibration(self, bins=10):
        """The reliability bins, the expected calibration error, the negative log-likelihood and the Brier score.

        Args:
            bins: equal-width confidence bins.

        Returns:
            A dict: `edges`, `counts`, `confidence`, `accuracy` (per bin), `ece`, `nll`, `brier`.
        """
        result = measures.reliability(np.exp(self.log_p), self.labels, bins=bins)
        result["nll"], result["brier"] = measures.nll_brier(self.log_p, self.labels)
        return result

    def lesions(self):
        """A layer-attended model's accuracy with each tap zeroed as the head sees it.

        Returns:
            `{"taps": [...], "intact": accuracy, "zeroed": [...], "drops": [...]}`.

        Raises:
            ValueError: the model is not layer-attended.
        """
        model = self.scored.model
        if not is_layer_attended(model):
            raise ValueError(f"{model.name!r} is not a layer-attended model: it has no taps to zero.")
        result = measures.tap_lesions(model, measures.array_batches(self.scored.inputs, self.labels))
        return {"taps": tap_names(model), **result, "drops": [result["intact"] - z for z in result["zeroed"]]}

    def plot_confusion_matrix(self, normalise=False):
        """The confusion matrix as the report draws it.

        Args:
            normalise: draw each row as shares of its class.

        Returns:
            A matplotlib `Figure`.
        """
        matrix = np.round(self.confusion_matrix(True), 2) if normalise else self.confusion_matrix()
        return figures.confusion(matrix, self.class_names, None, "confusion matrix" + (", rows as shares" if
                                                                                         normalise else ""))

    def plot_top_losses(self, k=9):
        """The `k` highest-loss images with their true and predicted classes (fastai's `plot_top_losses`).

        Args:
            k: how many.

        Returns:
            A matplotlib `Figure`.
        """
        rows = self.top_losses(k)
        for row in rows:
            row["label"] = f"#{row['index']}" + (f" {row['file']}" if "file" in row else "")
        images = unstandardise(self.scored.inputs[[r["index"] for r in rows]], self.scored.preprocessing)
        return figures.top_losses(images, rows, None, f"the {len(rows)} images with the highest loss")

    def plot_calibration(self, bins=10):
        """The reliability diagram with ECE, NLL and Brier score.

        Args:
            bins: equal-width confidence bins.

        Returns:
            A matplotlib `Figure`.
        """
        return figures.reliability(self.calibration(bins), None, "reliability diagram")

    def plot_lesions(self):
        """Each tap's accuracy drop when zeroed (layer-attended models).

        Returns:
            A matplotlib `Figure`.
        """
        result = self.lesions()
        return figures.lesions(result["taps"], result["intact"], result["zeroed"], None,
                               "accuracy with each tap zeroed")
