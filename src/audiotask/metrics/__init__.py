"""Evaluation metrics: sound event detection through sed_scores_eval, voice activity through pyannote.metrics,
clip classification and tagging through torchmetrics."""

from audiotask.metrics.classification import (
    average_precision_report,
    classification_report,
    format_classification,
    format_tagging,
    plot_confusion,
)
from audiotask.metrics.events import events_to_scores, merge_connected
from audiotask.metrics.psds import PSDS_SCENARIOS, operating_points_to_scores, psds, psds_from_operating_points
from audiotask.metrics.sound_events import (
    evaluate_sound_events,
    event_based_f1,
    format_table,
    intersection_based_f1,
    segment_based_f1,
)
from audiotask.metrics.voice_activity import detection_error_rate

__all__ = [
    "PSDS_SCENARIOS",
    "average_precision_report",
    "classification_report",
    "detection_error_rate",
    "evaluate_sound_events",
    "event_based_f1",
    "events_to_scores",
    "format_classification",
    "format_table",
    "format_tagging",
    "intersection_based_f1",
    "merge_connected",
    "operating_points_to_scores",
    "plot_confusion",
    "psds",
    "psds_from_operating_points",
    "segment_based_f1",
]
