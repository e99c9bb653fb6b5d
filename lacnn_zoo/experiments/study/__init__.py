"""The depth study: do the layer-attended paper's claims show where they should, in deep networks?

`depth_study` trains the variants (`runs`), lesions them (`lesions`), tests the criteria (`summary`, with
`lacnn_zoo.experiments.statistics`) and writes the tables, figures and study.md (`report`, `plots`).
"""

from lacnn_zoo.experiments.statistics import mean_std, verdict, welch
from lacnn_zoo.experiments.study.layout import CRITERIA, FULL, QUICK, conv_layers, run_dir, variant_overrides
from lacnn_zoo.experiments.study.lesions import backbone_units, gated_model, lesion_accuracies, mean_drop
from lacnn_zoo.experiments.study.report import markdown_report, print_summary
from lacnn_zoo.experiments.study.runs import check_study_arguments, depth_study
from lacnn_zoo.experiments.study.summary import climbing_criterion, summarise, verdicts
from lacnn_zoo.options import VARIANTS

__all__ = [
    "CRITERIA", "FULL", "QUICK", "VARIANTS", "backbone_units", "check_study_arguments", "climbing_criterion",
    "conv_layers", "depth_study", "gated_model", "lesion_accuracies", "markdown_report", "mean_drop", "mean_std",
    "print_summary", "run_dir", "summarise", "variant_overrides", "verdict", "verdicts", "welch",
]
