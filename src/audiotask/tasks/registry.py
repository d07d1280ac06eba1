"""The named tasks: one table maps each name and its aliases to a task class.

The command line takes its ``--task`` choices and help from :data:`TASKS`. Classes are
named as ``"module:Class"`` strings and imported only by :func:`load`: task modules import
torch and Lightning, which take seconds, and ``audiotask --help`` must answer at once.
This module therefore imports nothing heavy.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Iterable, Optional

#: constructor keywords every registered task accepts (those of the shared engine)
ENGINE_OPTIONS = ("batch_size", "num_workers", "cache", "duration")


class UnknownTaskError(ValueError):
    """A task name that is neither a registered name nor an alias; the message lists them."""


@dataclass(frozen=True)
class TaskEntry:
    """One registered task.

    Parameters
    ----------
    name : str
        Canonical name, named for the problem (``"sound-event-detection"``).
    target : str
        ``"module:Class"`` of the task class, imported on :meth:`load`.
    help : str
        One line saying what the task does.
    aliases : tuple of str
        Other accepted names; the first is the short name shown by the command line.
    options : tuple of str
        Constructor keywords the task accepts besides :data:`ENGINE_OPTIONS` (e.g.
        ``"classes"``): a user option that maps to a keyword outside them is refused.
    command_line_defaults : tuple of (keyword, value)
        What ``audiotask train`` passes for a keyword the user did not give, where the
        best recipe differs from the class's default (kept for the Python API's users).
    model_defaults : tuple of (keyword, value)
        ``--model-option`` values ``audiotask train`` gives the CRNN unless told otherwise.
    apply_outputs : str
        ``"module:Class"`` of what ``audiotask apply`` writes for the task's models (see
        ``cli/apply_outputs.py``; default: scores and events, as for every detection task).
    evaluation : str, optional
        ``"module:function"`` scoring the task's outputs for ``audiotask evaluate`` (None: the
        task has no evaluation).
    evaluation_table : str, optional
        ``"module:function"`` printing the evaluation's results without ``--json`` (default:
        the sound event table).
    evaluation_inputs : tuple of str
        The positional files of its evaluation, as ``args`` names them.
    evaluation_options : tuple of str
        The options (``args`` names) its evaluation takes among those only some take; the
        others are refused.
    """

    name: str
    target: str
    help: str
    aliases: tuple[str, ...] = ()
    options: tuple[str, ...] = ()
    command_line_defaults: tuple[tuple[str, object], ...] = ()
    model_defaults: tuple[tuple[str, object], ...] = ()
    apply_outputs: str = "audiotask.cli.apply_outputs:EventOutputs"
    evaluation: Optional[str] = None
    evaluation_table: Optional[str] = None
    evaluation_inputs: tuple[str, ...] = ("reference", "predictions")
    evaluation_options: tuple[str, ...] = ()

    @property
    def short_name(self) -> str:
        """The first alias, or the name when there is none."""
        return self.aliases[0] if self.aliases else self.name

    @property
    def class_name(self) -> str:
        return self.target.partition(":")[2]

    def accepts(self, option: str) -> bool:
        """Whether the task's constructor takes keyword ``option``."""
        return option in self.options or option in ENGINE_OPTIONS

    def load(self) -> type:
        """Import and return the task class."""
        return load_target(self.target)


def load_target(target: str):
    """The object that ``"module:name"`` (a string of this table, never read from a file) names."""
    module_name, _, name = target.partition(":")
    return getattr(importlib.import_module(module_name), name)


EVALUATE = "audiotask.cli.evaluate"
CLIP_EVALUATE = "audiotask.cli.evaluate_clips"
APPLY_OUTPUTS = "audiotask.cli.apply_outputs"
#: the options of an evaluation of detections written as events
EVENT_EVALUATION = ("durations", "audio", "scores")
#: those of a detection error rate (voice activity, overlap)
RATE_EVALUATION = ("durations", "uem")


TASKS: tuple[TaskEntry, ...] = (
    TaskEntry(
        "sound-event-detection",
        "audiotask.tasks.sound_event_detection:SoundEventDetection",
        "which sound classes are active, per chunk or per frame (multi-label)",
        aliases=("sed",),
        options=("classes", "resolution", "kind_proportions", "augmentation", "mean_teacher",
                 "consistency_ramp_up", "mixing", "select_by"),
        # DCASE's recipe: frame decisions over ten-second clips
        command_line_defaults=(("resolution", "frame"), ("duration", 10.0)),
        # the CRNN that scored best at equal CPU time (README, "What each part brings"): 3.5x
        # cheaper per step than the class's default sizes; per-example log-mel normalisation,
        # which held best on the real recordings' unseen sources (PSDS2 0.061 against 0.000)
        model_defaults=(("channels", (16, 32, 64)), ("n_mels", 32), ("hidden_size", 64),
                        ("normalization", "instance")),
        evaluation=f"{EVALUATE}:evaluate_sed", evaluation_options=EVENT_EVALUATION,
    ),
    TaskEntry(
        "voice-activity-detection",
        "audiotask.tasks.voice_activity_detection:VoiceActivityDetection",
        "is anybody speaking, frame by frame (any annotated label is speech)",
        aliases=("vad",),
        evaluation=f"{EVALUATE}:evaluate_vad", evaluation_options=RATE_EVALUATION,
    ),
    TaskEntry(
        "overlapped-speech-detection",
        "audiotask.tasks.overlapped_speech_detection:OverlappedSpeechDetection",
        "are two or more speakers talking at once, frame by frame",
        aliases=("osd",),
        evaluation=f"{EVALUATE}:evaluate_osd", evaluation_options=RATE_EVALUATION,
    ),
    TaskEntry(
        "multi-label-segmentation",
        "audiotask.tasks.multilabel_segmentation:MultiLabelSegmentation",
        "which labels are active, frame by frame (multi-label)",
        aliases=("mls",),
        options=("classes",),
        # per-class frame decisions written as events, as sound event detection's
        evaluation=f"{EVALUATE}:evaluate_sed", evaluation_options=EVENT_EVALUATION,
    ),
    TaskEntry(
        "audio-classification",
        "audiotask.tasks.audio_classification:AudioClassification",
        "which one class a clip belongs to (mono-label, one decision per clip)",
        aliases=("classification",),
        options=("classes", "fold", "augmentation"),
        apply_outputs=f"{APPLY_OUTPUTS}:ClassificationOutputs",
        evaluation=f"{CLIP_EVALUATE}:evaluate_classification",
        evaluation_table=f"{CLIP_EVALUATE}:classification_table", evaluation_options=("plot", "fold"),
    ),
    TaskEntry(
        "audio-tagging",
        "audiotask.tasks.audio_tagging:AudioTagging",
        "which classes occur in a clip (multi-label tags, one decision per clip)",
        aliases=("tagging",),
        options=("classes", "fold", "augmentation"),
        apply_outputs=f"{APPLY_OUTPUTS}:TaggingOutputs",
        evaluation=f"{CLIP_EVALUATE}:evaluate_tagging", evaluation_table=f"{CLIP_EVALUATE}:tagging_table",
        evaluation_options=("fold",),
    ),
    TaskEntry(
        "snr-estimation",
        "audiotask.tasks.snr_estimation:SNREstimation",
        "signal-to-noise ratio of speech, frame by frame (regression, trained on mixtures made on the fly)",
        aliases=("snr",),
        options=("noise", "snr_range", "loss"),
        apply_outputs=f"{APPLY_OUTPUTS}:SNROutputs",
    ),
    TaskEntry(
        "speaker-embedding",
        "audiotask.tasks.speaker_embedding:SpeakerEmbedding",
        "one vector per speech chunk, close for one speaker and far apart for two (verification)",
        aliases=("embedding",),
        options=("speakers_per_batch", "dimension", "margin", "scale"),
        apply_outputs=f"{APPLY_OUTPUTS}:EmbeddingOutputs",
        evaluation=f"{CLIP_EVALUATE}:evaluate_verification", evaluation_table=f"{CLIP_EVALUATE}:verification_table",
        evaluation_inputs=("embeddings",), evaluation_options=("trials",),
    ),
)


def _by_name() -> dict[str, TaskEntry]:
    table = {}
    for entry in TASKS:
        for name in (entry.name, *entry.aliases):
            if name in table:  # a name must resolve to one task: caught by the tests at once
                raise RuntimeError(f"task name {name!r} is registered twice")
            table[name] = entry
    return table


def names() -> list[str]:
    """Every accepted name: each task's canonical name then its aliases, in table order."""
    return [name for entry in TASKS for name in (entry.name, *entry.aliases)]


def resolve(name: str) -> TaskEntry:
    """The entry registered under ``name`` (a canonical name or an alias).

    Raises :class:`UnknownTaskError`, listing the accepted names, for any other name.
    """
    entry = _by_name().get(name)
    if entry is None:
        listed = ", ".join(f"{e.name} ({', '.join(e.aliases)})" if e.aliases else e.name for e in TASKS)
        raise UnknownTaskError(f"unknown task {name!r}: choose one of {listed}")
    return entry


def load(name: str) -> type:
    """The task class registered under ``name`` (imported now)."""
    return resolve(name).load()


def accepting(option: str) -> list[TaskEntry]:
    """The entries whose task takes constructor keyword ``option``."""
    return [entry for entry in TASKS if entry.accepts(option)]


def describe(entries: Iterable[TaskEntry] = TASKS) -> str:
    """``"sed (sound-event-detection): ..."`` for each entry, ``"; "``-separated (for help texts)."""
    def named(entry: TaskEntry) -> str:
        return entry.name if entry.short_name == entry.name else f"{entry.short_name} ({entry.name})"

    return "; ".join(f"{named(entry)}: {entry.help}" for entry in entries)
