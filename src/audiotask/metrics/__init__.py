"""Evaluation metrics: sound event detection through sed_scores_eval, voice activity through pyannote.metrics."""

from audiotask.metrics.sound_events import (
    PSDS_SCENARIOS,
    evaluate_sound_events,
    event_based_f1,
    events_to_scores,
    format_table,
    intersection_based_f1,
    merge_connected,
    operating_points_to_scores,
    psds,
    psds_from_operating_points,
    segment_based_f1,
)
from audiotask.metrics.voice_activity import detection_error_rate

__all__ = [
    "PSDS_SCENARIOS",
    "detection_error_rate",
    "evaluate_sound_events",
    "event_based_f1",
    "events_to_scores",
    "format_table",
    "intersection_based_f1",
    "merge_connected",
    "operating_points_to_scores",
    "psds",
    "psds_from_operating_points",
    "segment_based_f1",
]
