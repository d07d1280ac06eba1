"""Train a model on a pyannote.database protocol.

Writes, under --output: checkpoints/ (Lightning checkpoints: last.ckpt, the latest state,
every --checkpoint-every steps and at the end; interrupted.ckpt when the run stops on Ctrl-C,
SIGTERM or an error; either continues the run with --resume), metrics.csv (training and
validation metrics, one row per logging step; a resumed run appends) and model/ (the kept
model, to load with Model.from_pretrained or to pass to `audiotask apply`).

Stopped by Ctrl-C (SIGINT) or SIGTERM (a scheduler preempting the job), train saves
interrupted.ckpt (SIGTERM: at the end of the current step), says in one line how to resume
and exits with status 130 or 143, never 0. --resume continues the run of its checkpoint only:
another task, other classes, chunk duration or model options are refused in one line naming
what differs (fine-tuning a trained model for another task is --from).

example:
  audiotask train --database data/database.yml \\
      --protocol AudiotaskDemo.SpeakerDiarization.SoundEvents --task sed --resolution frame \\
      --model CRNN --model-option 'channels=[16,32,64]' --duration 10 --epochs 20 --output run
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from audiotask.cli.common import (
    CommandError,
    Interrupted,
    model_options,
    parse_options,
    quiet_warnings,
    record_signal,
    stop_message,
    stopped_by_signal,
)
from audiotask.cli.option_readers import check_model_options
from audiotask.tasks import registry

HELP = "train a model on a protocol"
#: default of --checkpoint-every (audiotask.training.CHECKPOINT_EVERY, not imported: --help stays light)
CHECKPOINT_EVERY = 100

#: the architecture of --model when none is given
MODEL_DEFAULT = "CRNN"
#: ``--fold all``: one run per fold, each validated on its fold (cross-validation)
ALL_FOLDS = "all"


def applies_to(keyword: str) -> str:
    """``"sed, mls"``: the short names of the tasks that take ``keyword`` (for help and errors)."""
    return ", ".join(entry.short_name for entry in registry.accepting(keyword))


def add_task_options(parser: argparse.ArgumentParser, groups: dict) -> None:
    """The options of the registered tasks (their entries' ``options``), each in its section of
    ``--help`` (``groups``: those already made, by title) and saying which tasks take it."""
    every_task = len(registry.TASKS)
    for option in registry.task_options().values():
        if option.group not in groups:
            groups[option.group] = parser.add_argument_group(option.group)
        takers = registry.accepting(option.keyword)
        prefix = "" if len(takers) == every_task else f"{applies_to(option.keyword)} only: "
        groups[option.group].add_argument(option.flag, help=(prefix + option.help).replace("%", "%%"),
                                          **option.argparse_keywords())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group("data")
    data.add_argument("--database", action="append", default=[], metavar="YML",
                      help="pyannote.database configuration (repeatable; default: $PYANNOTE_DATABASE_CONFIG)")
    data.add_argument("--protocol", required=True, help="protocol name, e.g. MyDatabase.SpeakerDiarization.MyProtocol")
    data.add_argument("--cache", type=Path, metavar="DIR", help="cache folder for metadata and decoded audio "
                      "(default: $AUDIOTASK_CACHE or ~/.cache/audiotask)")
    task = parser.add_argument_group("task")
    task.add_argument("--task", choices=registry.names(), default="sed", metavar="TASK",
                      help=registry.describe().replace("%", "%%") + " (default: %(default)s)")
    task.add_argument("--duration", type=float, help="training chunk duration in seconds (default: the task's; "
                      "sed: 10)")
    add_task_options(parser, groups={"task": task})
    model = parser.add_argument_group("model")
    model.add_argument("--model", default=MODEL_DEFAULT,
                       help="registered architecture: CRNN, Debug, SileroVAD, Resemblyzer, or one an installed package declares in the "
                            "'audiotask.models' entry-point group (default: %(default)s)")
    model.add_argument("--model-option", action="append", default=[], metavar="KEY=VALUE",
                       help="architecture argument, VALUE read as JSON (repeatable), e.g. hidden_size=32 (sed's "
                       "CRNN defaults to channels=[16,32,64], n_mels=32, hidden_size=64, the best at equal CPU time, and "
                       "normalization=instance, the best on real recordings)")
    pretrained = parser.add_argument_group("fine-tuning")
    pretrained.add_argument("--from", dest="from_model", type=Path, metavar="MODEL_DIR",
                            help="start from the weights of a saved or imported model (a model folder): its "
                            "architecture and arguments, the head rebuilt where the task's classes or problem "
                            "differ (a warning names the re-initialised weights); --model and --model-option do not apply")
    pretrained.add_argument("--features-from", type=Path, metavar="ENCODER_DIR",
                            help="feed --model (a CRNN) the frame embeddings of a pretrained encoder (a model folder "
                            "of BEATs, PANNs or SileroVAD, e.g. from audiotask import) beside its log-mel, the encoder "
                            "frozen and saved inside the model (the DCASE 2023 baseline's BEATs + CRNN)")
    pretrained.add_argument("--freeze-encoder", action="store_true",
                            help="--from only: train the head alone (the encoder's weights and normalisation "
                            "statistics stay the pretrained ones)")
    pretrained.add_argument("--encoder-lr-scale", type=float, metavar="F",
                            help="--from only: the encoder's learning rate as a share of --learning-rate, e.g. 0.1 "
                            "(default: 1, the model trained whole)")
    training = parser.add_argument_group("training")
    training.add_argument("--epochs", type=int, help="number of epochs (default: 10 unless --max-steps is given)")
    training.add_argument("--max-steps", type=int, help="stop after this many optimiser steps")
    training.add_argument("--batch-size", type=int, default=32, help="default: %(default)s")
    training.add_argument("--num-workers", type=int, help="dataloader workers (default: none on 2 cores or fewer, else half the cores)")
    training.add_argument("--learning-rate", type=float, help="Adam learning rate (default: the model's, 1e-3)")
    training.add_argument("--lr-schedule", choices=("constant", "cosine"),
                          help="learning-rate schedule over the run: constant, or cosine (linear warm-up over "
                               "--warmup-steps, then a cosine decay to 0 at the last step) (default: constant)")
    training.add_argument("--warmup-steps", type=int, metavar="N",
                          help="--lr-schedule cosine: optimiser steps of the linear warm-up (default: 0)")
    training.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    devices = parser.add_argument_group("devices (passed to Lightning's Trainer; torchrun and SLURM are detected)")
    devices.add_argument("--accelerator", metavar="NAME",
                         help="cpu, gpu, cuda, mps, tpu or auto (default: auto: a GPU when there is one)")
    devices.add_argument("--devices", metavar="N|IDS|auto",
                         help="devices per machine: a count, the indices (0,2), or auto (default: 1)")
    devices.add_argument("--num-nodes", type=int, metavar="N", help="machines (default: 1)")
    devices.add_argument("--strategy", metavar="NAME",
                         help="auto, ddp, ddp_spawn, fsdp... (default: auto, ddp when there are several devices)")
    devices.add_argument("--precision", choices=PRECISIONS,
                         help="numeric precision of training (default: 32-true)")
    training.add_argument("--gradient-clip", type=float, metavar="VALUE",
                          help="clip the gradients' norm to VALUE (Lightning's gradient_clip_val; default: no clipping)")
    training.add_argument("--max-nonfinite-losses", type=int, default=5, metavar="K",
                          help="a batch whose loss is NaN or infinite is skipped with a warning; training stops "
                               "with an error at K such losses in a row (default: %(default)s)")
    training.add_argument("--validate-every", type=int, default=1, metavar="K",
                          help="score the development set every K epochs (default: %(default)s; the speed line "
                               "says what share of the run validation took)")
    training.add_argument("--checkpoint-every", type=int, default=CHECKPOINT_EVERY, metavar="N",
                          help="write checkpoints/last.ckpt (atomically) every N optimiser steps and at the end: a "
                               "killed run loses at most N steps (default: %(default)s)")
    training.add_argument("--resume", type=Path, metavar="CKPT",
                          help="continue a run from its Lightning checkpoint: checkpoints/interrupted.ckpt (written when a run "
                               "stops on Ctrl-C, SIGTERM or an error, mid-epoch) or checkpoints/last.ckpt (its latest state); "
                               "training goes on with the chunks it would have seen, and metrics.csv of the same "
                               "--output goes on from the checkpoint's step; give the same options as that run (another task, "
                               "classes, --duration or --model-option is refused: fine-tuning is --from)")
    training.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    parser.add_argument("--output", type=Path, required=True, metavar="DIR", help="output folder")


def load_protocol(databases: list[str], name: str):
    """Protocol ``name`` from the ``database.yml`` files ``databases`` (plus pyannote's defaults)."""
    from audiotask.protocols.loading import UnknownProtocolError, load_protocol as load

    try:
        return load(name, databases)
    except FileNotFoundError as error:
        raise CommandError(str(error)) from None
    except UnknownProtocolError as error:
        raise CommandError(f"{error}: check --protocol and --database") from None


def task_options(args: argparse.Namespace, entry: registry.TaskEntry) -> dict:
    """Constructor keywords of ``entry``'s task from ``args``; options it does not take are refused.

    Only the options given are passed: an absent one leaves the task's own default.
    """
    options = dict(batch_size=args.batch_size, cache=args.cache)
    if args.duration is not None:
        options["duration"] = args.duration
    if args.num_workers is not None:
        options["num_workers"] = args.num_workers
    offered = registry.task_options()
    given = {keyword for keyword in offered if getattr(args, keyword, None) is not None}
    for keyword, value in entry.command_line_defaults:
        if keyword not in given and not (keyword == "duration" and args.duration is not None):
            options[keyword] = value
    refused = []
    for keyword, option in offered.items():
        value = getattr(args, keyword, None)
        if value is None:
            continue
        if not entry.accepts(keyword):
            refused.append(f"{option.flag} applies to --task {applies_to(keyword)} only")
            continue  # not read: reading may fail (a --noise that is no folder), and it is refused anyway
        options[keyword] = option.reader()(value)
    if refused:
        raise CommandError(f"{'; '.join(refused)}, not to --task {entry.short_name}")
    return options


def make_task(args: argparse.Namespace, protocol, *, fold=None):
    """The registered task named by ``args.task``, built from the options that apply to it.

    ``fold``: the fold a run of a cross-validation validates on, in place of ``--fold all``
    (which no task takes: without ``fold``, the task is built unsplit). ``CommandError``
    naming the options of a constructor argument that has no default and was not given.
    """
    import inspect

    entry = registry.resolve(args.task)
    options = task_options(args, entry)
    if options.get("fold") == ALL_FOLDS:
        del options["fold"]
    if fold is not None:
        options["fold"] = fold
    cls = entry.load()
    required = [name for name, parameter in list(inspect.signature(cls).parameters.items())[1:]
                if parameter.default is inspect.Parameter.empty and name not in options
                and parameter.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)]
    if required:
        offered = registry.task_options()
        flags = [offered[name].flag if name in offered else name for name in required]
        raise CommandError(f"--task {entry.short_name} needs {', '.join(flags)}")
    return cls(protocol, **options)


def make_model(args: argparse.Namespace, task):
    """The architecture of ``args`` with its ``--model-option`` arguments (or the model of
    ``--from``), the task attached."""
    from audiotask.core.model import model_class

    if getattr(args, "from_model", None) is not None:
        return pretrained_model(args, task)

    options = model_options(args)
    try:
        architecture = model_class(args.model, source="--model")
    except (ValueError, TypeError) as error:
        raise CommandError(str(error)) from None
    check_model_options(architecture, parse_options(args.model_option), args.model_option, model_options_shown(args))
    try:
        if getattr(args, "features_from", None) is not None:
            return with_pretrained_features(architecture, args.features_from, task=task, **options)
        return architecture(task=task, **options)
    except TypeError as error:  # an unknown keyword: say which model refused it
        raise CommandError(f"--model-option for {args.model}: {error}") from None


def model_options_shown(args: argparse.Namespace) -> dict:
    """The value of each ``--model-option`` that an error shows as an example: the task's default
    for its CRNN (``TaskEntry.model_defaults``), else none (the constructor's default shows)."""
    if args.model != MODEL_DEFAULT:
        return {}
    return dict(registry.resolve(args.task).model_defaults)


def with_pretrained_features(architecture, folder: Path, **arguments):
    """``architecture`` fed the frame embeddings of the encoder saved in ``folder``."""
    from audiotask.core.manifest import MANIFEST
    from audiotask.core.model import Model

    if not hasattr(architecture, "with_pretrained_features"):
        raise CommandError(f"--features-from: {architecture.__name__} takes no pretrained features (CRNN does)")
    if not (folder / MANIFEST).is_file():
        raise CommandError(f"--features-from: {folder} is not a model folder (no {MANIFEST})")
    encoder = Model.from_pretrained(folder)
    try:
        return architecture.with_pretrained_features(encoder, **arguments)
    except ValueError as error:
        raise CommandError(f"--features-from {folder}: {error}") from None


def pretrained_model(args: argparse.Namespace, task):
    """The model saved in ``args.from_model``, to fine-tune for ``task`` (its head rebuilt
    by ``Model.attach_specifications`` where the task's specifications differ)."""
    from audiotask.core.manifest import MANIFEST
    from audiotask.core.model import Model
    from audiotask.inference.onnx import is_onnx_export

    folder = args.from_model
    if args.model_option or args.model != MODEL_DEFAULT or getattr(args, "features_from", None) is not None:
        raise CommandError("--from trains the model's own architecture: --model, --model-option and --features-from "
                           "do not apply")
    if not (folder / MANIFEST).is_file():
        raise CommandError(f"--from: {folder} is not a model folder (no {MANIFEST})")
    if is_onnx_export(folder):
        raise CommandError(f"--from: {folder} is an ONNX export: fine-tune the model folder it was made from")
    model = Model.from_pretrained(folder)
    model.train()
    model.task = task
    return model


def encoder_lr_scale(args: argparse.Namespace) -> float | None:
    """The encoder's share of the learning rate that ``--freeze-encoder`` / ``--encoder-lr-scale``
    ask for (None: neither given)."""
    if args.freeze_encoder and args.encoder_lr_scale is not None:
        raise CommandError("--freeze-encoder and --encoder-lr-scale: give one")
    if args.freeze_encoder or args.encoder_lr_scale is not None:
        if args.from_model is None:
            raise CommandError("--freeze-encoder and --encoder-lr-scale apply to a pretrained model: give --from")
        if args.encoder_lr_scale is not None and not 0 <= args.encoder_lr_scale:
            raise CommandError(f"--encoder-lr-scale must be >= 0, not {args.encoder_lr_scale}")
        return 0.0 if args.freeze_encoder else float(args.encoder_lr_scale)
    return None


#: Lightning's precisions (``Trainer(precision=...)``)
PRECISIONS = ("64-true", "32-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true")


def parsed_devices(text: str):
    """``--devices``: ``"auto"``, a count (``2``) or device indices (``0,2``: a list)."""
    text = text.strip()
    if text == "auto":
        return text
    try:
        if "," in text:
            return [int(index) for index in text.split(",") if index.strip()]
        count = int(text)
    except ValueError:
        raise CommandError(f"--devices takes a count, indices such as 0,2, or auto: not {text!r}") from None
    if count < 1 and count != -1:  # -1: every device, as Lightning reads it
        raise CommandError(f"--devices must be positive (or -1, every device), not {count}")
    return count


def device_options(args: argparse.Namespace) -> dict:
    """The Trainer's device keywords that ``args`` gives (the others keep make_trainer's: one
    device, the accelerator Lightning finds)."""
    options = {"accelerator": args.accelerator, "strategy": args.strategy, "precision": args.precision,
               "num_nodes": args.num_nodes,
               "devices": None if args.devices is None else parsed_devices(args.devices)}
    if args.num_nodes is not None and args.num_nodes < 1:
        raise CommandError(f"--num-nodes must be positive, not {args.num_nodes}")
    return {name: value for name, value in options.items() if value is not None}


def training_options(args: argparse.Namespace) -> dict:
    """Keywords of ``training.fit`` (and of the Trainer) from ``args``; wrong values refused."""
    checked = {"--checkpoint-every": args.checkpoint_every, "--max-nonfinite-losses": args.max_nonfinite_losses,
               "--gradient-clip": args.gradient_clip, "--validate-every": args.validate_every}
    for flag, value in checked.items():
        if value is not None and value <= 0:
            raise CommandError(f"{flag} must be positive, not {value}")
    return dict(
        max_epochs=10 if args.epochs is None and args.max_steps is None else args.epochs,
        max_steps=args.max_steps, progress=args.progress, checkpoint_every=args.checkpoint_every,
        gradient_clip_val=args.gradient_clip, check_val_every_n_epoch=args.validate_every,
        **device_options(args),
    )


def run(args: argparse.Namespace) -> int:
    quiet_warnings()
    options = training_options(args)  # before the data: a wrong value fails at once
    if args.resume is not None and not args.resume.is_file():
        raise CommandError(f"no such checkpoint: {args.resume}")
    started = time.time()
    try:
        return train(args, options)
    except BaseException as stop:  # Ctrl-C, SIGTERM: what was kept, how to go on
        if not stopped_by_signal(stop):
            raise
        raise Interrupted(interruption(args.output, since=started, cause=stop)) from stop


def train(args: argparse.Namespace, options: dict) -> int:
    """One run (or a cross-validation, ``--fold all``) with the ``training_options`` ``options``."""
    import lightning.pytorch as pl

    from audiotask.core.resumed_run import ResumeMismatch
    from audiotask.training import SigtermSeenFirst, fit

    pl.seed_everything(args.seed, workers=True)
    # a SIGTERM to the whole job reads as a stop even if its dataloader workers' deaths cut
    # Lightning's handler short
    options = {**options, "callbacks": [*options.get("callbacks", []), SigtermSeenFirst(record_signal)]}
    protocol = load_protocol(args.database, args.protocol)
    if args.fold == ALL_FOLDS:
        return cross_validation(args, protocol, options)
    model = prepared_model(args, make_task(args, protocol))
    try:
        result = fit(model, args.output, ckpt_path=args.resume, **options)
    except ResumeMismatch as error:  # raised before any weight was loaded: nothing was written
        error.hint = resume_hint(args, error)
        raise
    print(f"model:       {result.model}")
    print(f"checkpoints: {result.checkpoints}")
    print(f"metrics:     {result.metrics}")
    if result.skipped or result.cut_short:
        print(f"training:    {result.summary()}")
    if result.speed() is not None:
        print(f"speed:       {result.speed()}")
    if result.monitored is not None:
        print(f"kept the checkpoint with the best {result.monitored} ({result.best_score:.4f}): {result.checkpoint}")
    return 0


def resume_hint(args: argparse.Namespace, error) -> str:
    """What to do about a ``--resume`` checkpoint of another run (``core.resumed_run.ResumeMismatch``):
    resume with that run's model options, or fine-tune its model with ``--from`` (a new run)."""
    import json

    from audiotask.core.manifest import MANIFEST

    if error.what == "architecture":
        return f"resume with --model {error.architecture} and that run's --model-option values"
    if error.what == "arguments":
        options = " ".join(f"--model-option {key}={json.dumps(value, separators=(',', ':'))}"
                           for key, value in error.arguments.items())
        return f"resume with {options}" if options else "resume with that run's --model-option values"
    model = args.resume.parent.parent / "model"
    fine_tune = f"--from {model}" if (model / MANIFEST).is_file() else "--from MODEL_DIR (its run's model folder)"
    return f"resume with that run's options, or fine-tune its weights for this run with {fine_tune}"


def interruption(output: Path, *, since: float, cause: BaseException) -> str:
    """What a run stopped by a signal kept under ``output`` and how to go on, in one line.

    The checkpoint to resume is the newest ``interrupted.ckpt`` (written when training stopped,
    under ``output/fold-K`` for one fold of a cross-validation), else ``last.ckpt``, written by
    this run (after ``since``, a ``time.time()``): an older one is another run's. ``cause`` is
    what stopped it: the signal's own exception, or the error it caused (a dataloader worker
    killed by the same signal), then said too.
    """
    from audiotask.training import INTERRUPTED, LAST, checkpoint_step

    stopped = stop_message(cause if isinstance(cause, Exception) else KeyboardInterrupt())
    for name in (INTERRUPTED, LAST):
        written = [path for path in output.glob(f"**/checkpoints/{name}.ckpt") if path.stat().st_mtime >= since]
        if written:
            path = max(written, key=lambda candidate: candidate.stat().st_mtime)
            try:
                step = f" at step {checkpoint_step(path)}"
            except (ValueError, OSError):
                step = ""
            fold = path.parent.parent
            extra = f" --fold {fold.name.removeprefix('fold-')} --output {fold}" if fold != output else ""
            return (f"{stopped}{step}: {path} holds the run; continue it with the same options: "
                    f"audiotask train ...{extra} --resume {path}")
    return f"{stopped} before training began: nothing to resume (no checkpoint written), run it again"


def prepared_model(args: argparse.Namespace, task):
    """The model of ``args`` for ``task``, with its training settings (learning rate, tolerated
    non-finite losses)."""
    from audiotask.training import set_learning_rate

    scale = encoder_lr_scale(args)  # before the model: a wrong combination fails at once
    model = make_model(args, task)
    set_learning_rate(model, model.learning_rate if args.learning_rate is None else args.learning_rate,
                      schedule=args.lr_schedule, warmup_steps=args.warmup_steps)
    if scale is not None:
        model.encoder_lr_scale = scale
    task.max_nonfinite_losses = args.max_nonfinite_losses
    return model


def cross_validation(args: argparse.Namespace, protocol, options: dict) -> int:
    """``--fold all``: one run per fold of the protocol into OUTPUT/fold-K, then their summary."""
    from audiotask.cross_validation import cross_validate, format_cross_validation
    from audiotask.engine.folds import folds as task_folds

    if args.resume is not None:
        raise CommandError("--resume continues one run, not a cross-validation: resume the fold that stopped "
                           "with --fold K --output OUTPUT/fold-K --resume CKPT")
    folds = task_folds(make_task(args, protocol))  # refuses --fold for a task without folds
    if len(folds) < 2:
        raise CommandError(f"--fold all: the training files of {args.protocol} are in {len(folds)} fold(s)"
                           f"{' (' + ', '.join(folds) + ')' if folds else ''}; cross-validation needs two or more")
    print(f"cross-validation over folds {', '.join(folds)}: one run each, into {args.output}/fold-K")
    result = cross_validate(lambda fold: make_task(args, protocol, fold=fold),
                            lambda task: prepared_model(args, task), args.output, folds, **options)
    print(format_cross_validation(result))
    print(f"results:     {args.output / 'cross_validation.json'}")
    return 0
