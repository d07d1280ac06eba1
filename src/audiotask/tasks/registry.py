"""The named tasks: one table maps each name and its aliases to a task class.

The command line takes its ``--task`` choices and help from :data:`TASKS`, and each entry
holds all of its task's command-line faces: the options ``audiotask train`` offers for it
(:class:`TaskOption`), what ``apply`` writes and how ``evaluate`` scores it. Adding a task
with full command-line support touches its module and its entry.

Classes and functions are named as ``"module:name"`` strings and imported only when used
(:func:`load_target`): task modules import torch and Lightning, which take seconds, and
``audiotask --help`` must answer at once. This module therefore imports nothing heavy.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable, Iterable, Optional, Union

#: constructor keywords every registered task accepts (those of the shared engine)
ENGINE_OPTIONS = ("batch_size", "num_workers", "cache", "duration")


class UnknownTaskError(ValueError):
    """A task name that is neither a registered name nor an alias; the message lists them."""


@dataclass(frozen=True)
class TaskOption:
    """A constructor keyword of a task, as ``audiotask train`` offers it on the command line.

    Parameters
    ----------
    keyword : str
        The constructor keyword (also the ``argparse`` destination).
    flag : str
        The command-line option (``"--classes"``).
    help : str
        What it does; the command line prefixes the tasks that take it.
    group : str
        Title of the ``--help`` section it is listed under.
    read : callable or str
        Reads the option's text (a list of texts when ``repeatable``) into the constructor's
        value: a callable, or ``"module:function"`` imported when the option is given.
    metavar, choices
        As for ``argparse``.
    repeatable : bool
        Given once per ``KEY=VALUE`` pair (``argparse``'s ``append``).
    switch_off : bool
        A ``--no-...`` flag: ``False`` when given, else the task's own default.
    """

    keyword: str
    flag: str
    help: str
    group: str = "task"
    read: Union[Callable, str] = str
    metavar: Optional[str] = None
    choices: Optional[tuple[str, ...]] = None
    repeatable: bool = False
    switch_off: bool = False

    def reader(self) -> Callable:
        """The function reading the option's text (imported now when named as a string)."""
        return load_target(self.read) if isinstance(self.read, str) else self.read

    def argparse_keywords(self) -> dict:
        """Keywords of ``add_argument`` for this option (its help aside)."""
        if self.switch_off:
            return dict(dest=self.keyword, action="store_const", const=False)
        keywords = dict(dest=self.keyword, metavar=self.metavar, choices=self.choices)
        if self.repeatable:
            keywords["action"] = "append"
        return keywords


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
    options : tuple of TaskOption
        Constructor keywords the task accepts besides :data:`ENGINE_OPTIONS`, with their
        command-line options: a user option that maps to a keyword outside them is refused.
        An option two tasks take is one shared :class:`TaskOption` (e.g. :data:`CLASSES`).
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
    options: tuple[TaskOption, ...] = ()
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
        return option in self.keywords or option in ENGINE_OPTIONS

    @property
    def keywords(self) -> tuple[str, ...]:
        """The constructor keywords of :attr:`options`."""
        return tuple(option.keyword for option in self.options)

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

READERS = "audiotask.cli.option_readers"
DETECTION_RECIPE = "sound event detection recipe (sed at frame resolution; see README)"
CLIP_TASKS = "audio classification and tagging"

#: options more than one task takes (one declaration each, so that ``--help`` lists them once)
CLASSES = TaskOption("classes", "--classes", "comma-separated class names, in output order (default: the labels "
                     "of the training set, sorted)", read="audiotask.cli.common:parse_classes")
FOLD = TaskOption("fold", "--fold", "validate on fold K of the clip table and train on the other folds; 'all': one "
                  "run per fold, each into OUTPUT/fold-K, then each fold's scores and their mean ± standard deviation "
                  "(cross-validation)", group=CLIP_TASKS, metavar="K")
AUGMENTATION = TaskOption(
    "augmentation", "--augmentation-option", "augmentation setting (repeatable): mixup=0.5, filter_augment=true, "
    "frequency_masks=0, time_shift=0, gain=0, backgrounds=FOLDER, background_snr=[5,20]; none=true for none",
    group=DETECTION_RECIPE, read=f"{READERS}:detection_augmentation", metavar="KEY=VALUE", repeatable=True)

#: sound event detection's own
SED_OPTIONS = (
    CLASSES,
    TaskOption("resolution", "--resolution", "one decision per frame (strong labels) or per chunk (default: the "
               "task's)", choices=("frame", "chunk")),
    TaskOption("kind_proportions", "--kind-proportions", "shares of strongly labelled, weakly labelled and unlabelled "
               "files in each batch (default: strong=1,weak=1,none=2, as DCASE's baseline)", group=DETECTION_RECIPE,
               read=f"{READERS}:parse_shares", metavar="KIND=SHARE,..."),
    AUGMENTATION,
    TaskOption("mean_teacher", "--no-mean-teacher", "train without a mean teacher (and its consistency loss)",
               group=DETECTION_RECIPE, read=bool, switch_off=True),
    TaskOption("consistency_ramp_up", "--consistency-ramp-up", "optimiser steps over which the consistency loss's "
               "weight ramps up (default: 1000)", group=DETECTION_RECIPE, read=int, metavar="STEPS"),
    TaskOption("mixing", "--mixing-option", "dynamic mixing (repeatable): events=FOLDER (one sub-folder of isolated "
               "clips per class), backgrounds=FOLDER, share=0.25, snr_range=[0,20], events_per_clip=[1,3], "
               "max_overlap=2", group=DETECTION_RECIPE, read=f"{READERS}:dynamic_mixing", metavar="KEY=VALUE",
               repeatable=True),
    TaskOption("select_by", "--select-by", "what validation keeps the best checkpoint by (default: psds1)",
               group=DETECTION_RECIPE, choices=("psds1", "psds2", "loss")),
)
SNR = "SNR estimation"
SNR_OPTIONS = (
    TaskOption("noise", "--noise", "required; noise recordings mixed with the protocol's speech on the fly, a "
               "folder or a protocol's name", group=SNR, read=f"{READERS}:noise_source",
               metavar="FOLDER_OR_PROTOCOL"),
    TaskOption("snr_range", "--snr-range", "range (dB) of the SNRs drawn for the training mixtures (default: the "
               "task's)", group=SNR, read=f"{READERS}:parse_range", metavar="LOW,HIGH"),
    TaskOption("loss", "--loss", "regression loss (default: the task's, smooth_l1)", group=SNR,
               choices=("smooth_l1", "mse")),
)
EMBEDDING = "speaker embedding"
EMBEDDING_OPTIONS = (
    TaskOption("speakers_per_batch", "--speakers-per-batch", "distinct speakers in each batch (default: the task's)",
               group=EMBEDDING, read=int, metavar="N"),
    TaskOption("dimension", "--dimension", "size of the embeddings (default: the task's)", group=EMBEDDING, read=int),
    TaskOption("margin", "--margin", "additive angular margin of the loss (default: the task's, 0.2)",
               group=EMBEDDING, read=float),
    TaskOption("scale", "--scale", "scale of the cosines in the loss (default: the task's, 30)", group=EMBEDDING,
               read=float),
)

DIARIZATION = "speaker diarization"
DIARIZATION_OPTIONS = (
    TaskOption("max_speakers_per_chunk", "--max-speakers-per-chunk", "local speakers per chunk, the most active "
               "kept (default: the task's, 3)", group=DIARIZATION, read=int, metavar="N"),
    TaskOption("max_speakers_per_frame", "--max-speakers-per-frame", "most speakers active at once that the "
               "powerset stands for (default: the task's, 2)", group=DIARIZATION, read=int, metavar="N"),
    TaskOption("powerset", "--no-powerset", "train one output per local speaker (multi-label, permutation-invariant "
               "binary cross-entropy) instead of one class per set of speakers (powerset)", group=DIARIZATION,
               read=bool, switch_off=True),
)


TASKS: tuple[TaskEntry, ...] = (
    TaskEntry(
        "sound-event-detection",
        "audiotask.tasks.sed:SoundEventDetection",
        "which sound classes are active, per chunk or per frame (multi-label)",
        aliases=("sed",),
        options=SED_OPTIONS,
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
        options=(CLASSES,),
        # per-class frame decisions written as events, as sound event detection's
        evaluation=f"{EVALUATE}:evaluate_sed", evaluation_options=EVENT_EVALUATION,
    ),
    TaskEntry(
        "audio-classification",
        "audiotask.tasks.audio_classification:AudioClassification",
        "which one class a clip belongs to (mono-label, one decision per clip)",
        aliases=("classification",),
        options=(CLASSES, FOLD, AUGMENTATION),
        apply_outputs=f"{APPLY_OUTPUTS}:ClassificationOutputs",
        evaluation=f"{CLIP_EVALUATE}:evaluate_classification",
        evaluation_table=f"{CLIP_EVALUATE}:classification_table", evaluation_options=("plot", "fold"),
    ),
    TaskEntry(
        "audio-tagging",
        "audiotask.tasks.audio_tagging:AudioTagging",
        "which classes occur in a clip (multi-label tags, one decision per clip)",
        aliases=("tagging",),
        options=(CLASSES, FOLD, AUGMENTATION),
        apply_outputs=f"{APPLY_OUTPUTS}:TaggingOutputs",
        evaluation=f"{CLIP_EVALUATE}:evaluate_tagging", evaluation_table=f"{CLIP_EVALUATE}:tagging_table",
        evaluation_options=("fold",),
    ),
    TaskEntry(
        "snr-estimation",
        "audiotask.tasks.snr_estimation:SNREstimation",
        "signal-to-noise ratio of speech, frame by frame (regression, trained on mixtures made on the fly)",
        aliases=("snr",),
        options=SNR_OPTIONS,
        apply_outputs=f"{APPLY_OUTPUTS}:SNROutputs",
    ),
    TaskEntry(
        "speaker-embedding",
        "audiotask.tasks.speaker_embedding:SpeakerEmbedding",
        "one vector per speech chunk, close for one speaker and far apart for two (verification)",
        aliases=("embedding",),
        options=EMBEDDING_OPTIONS,
        apply_outputs=f"{APPLY_OUTPUTS}:EmbeddingOutputs",
        evaluation=f"{CLIP_EVALUATE}:evaluate_verification", evaluation_table=f"{CLIP_EVALUATE}:verification_table",
        evaluation_inputs=("embeddings",), evaluation_options=("trials",),
    ),
    TaskEntry(
        "speaker-diarization",
        "audiotask.tasks.speaker_diarization:SpeakerDiarization",
        "who speaks when in each chunk, among its local speakers (powerset or multi-label, permutation-invariant)",
        aliases=("diarization",),
        options=DIARIZATION_OPTIONS,
        apply_outputs="audiotask.cli.apply_diarization:DiarizationOutputs",
        evaluation=f"{EVALUATE}:evaluate_diarization", evaluation_table="audiotask.metrics.diarization:format_table",
        evaluation_options=("uem", "collar", "skip_overlap"),
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


def task_options(entries: Optional[Iterable[TaskEntry]] = None) -> dict[str, TaskOption]:
    """Every task option of ``entries`` (default: :data:`TASKS`) by keyword, in table order.

    Raises ``RuntimeError`` where two tasks declare one keyword differently: one
    command-line option cannot be two (caught by the tests at once).
    """
    table: dict[str, TaskOption] = {}
    for entry in TASKS if entries is None else entries:
        for option in entry.options:
            if table.setdefault(option.keyword, option) != option:
                raise RuntimeError(f"task option {option.keyword!r} is declared twice, differently "
                                   f"({table[option.keyword].flag} and {option.flag} of {entry.name})")
    return table


def accepting(option: str) -> list[TaskEntry]:
    """The entries whose task takes constructor keyword ``option``."""
    return [entry for entry in TASKS if entry.accepts(option)]


def describe(entries: Iterable[TaskEntry] = TASKS) -> str:
    """``"sed (sound-event-detection): ..."`` for each entry, ``"; "``-separated (for help texts)."""
    def named(entry: TaskEntry) -> str:
        return entry.name if entry.short_name == entry.name else f"{entry.short_name} ({entry.name})"

    return "; ".join(f"{named(entry)}: {entry.help}" for entry in entries)
