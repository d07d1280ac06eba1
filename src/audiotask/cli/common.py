"""Helpers shared by the subcommands; light imports only (see ``cli/main.py``)."""

from __future__ import annotations

import json
import re
import signal
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Optional, Sequence

# the extensions ``audiotask apply`` looks for in folders are those a uri is stripped of
from audiotask.protocols.uris import AUDIO_EXTENSIONS, FORMAT_EXTENSIONS, uri_of


class CommandError(Exception):
    """A user's mistake (missing file, conflicting options): reported in one line, exit status 2."""


# ---- signals: a command stopped by Ctrl-C or SIGTERM exits 130 or 143 ------------------------
#: exit status of a command stopped by a signal: 128 + its number, as a shell reports a process
#: the signal killed (so that a scheduler, or ``make``, never reads a stopped run as done)
SIGNAL_STATUS = {signal.SIGINT: 128 + signal.SIGINT, signal.SIGTERM: 128 + signal.SIGTERM}


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler preempting the job, ``kill``), raised as Ctrl-C's ``KeyboardInterrupt``
    is: whatever cleans up after Ctrl-C (Lightning's ``interrupted.ckpt``, the outputs of the
    files ``apply`` finished) does so after SIGTERM too."""


class Interrupted(BaseException):
    """A command stopped by a signal, saying what it kept and how to go on: one line, exit
    status 130 (SIGINT) or 143 (SIGTERM). A ``BaseException``, as ``KeyboardInterrupt``: an
    ``except Exception`` on its way does not take it for an error of its own."""


#: the signals received while a command runs (see :func:`signals_stop_the_command`)
_received: list[int] = []


def received_signal() -> Optional[int]:
    """The last signal (SIGINT, SIGTERM) received while the command runs, None without any."""
    return _received[-1] if _received else None


def signal_name(signum: Optional[int] = None) -> str:
    """``"SIGTERM"``: the name of ``signum`` (default: :func:`received_signal`; none: SIGINT,
    what a bare ``KeyboardInterrupt`` stands for)."""
    signum = received_signal() if signum is None else signum
    return signal.Signals(signum if signum is not None else signal.SIGINT).name


def stopped_by_signal(error: BaseException) -> bool:
    """Whether ``error`` is how a signal stopped the command: a ``KeyboardInterrupt`` (Ctrl-C,
    :class:`Terminated`), an :class:`Interrupted`, or whatever is raised once a signal came:
    Lightning exits with status 1 after Ctrl-C and stops training on SIGTERM with its
    ``SIGTERMException`` (a ``SystemExit``), and a signal sent to every process of a job kills
    its dataloader workers too (a ``RuntimeError`` of the DataLoader)."""
    if isinstance(error, (KeyboardInterrupt, Interrupted)) or received_signal() is not None:
        return True
    killed_by = worker_killed_by(error)
    if killed_by is not None:
        record_signal(killed_by)
        return True
    return False


#: torch's error when a dataloader worker died of a signal: "... is killed by signal: Terminated."
_WORKER_KILLED = re.compile(r"DataLoader worker \(pid.*\) is killed by signal: (Terminated|Interrupt)")


def worker_killed_by(error: BaseException) -> Optional[int]:
    """SIGTERM or SIGINT when ``error`` says a dataloader worker died of it, else None.

    A scheduler signals every process of a job: torch may report the worker's death before
    the command's own process runs its handler for the same signal (which then never runs, the
    error unwinding the command first), and the stop must still read as the signal's."""
    found = _WORKER_KILLED.search(str(error)) if isinstance(error, RuntimeError) else None
    if found is None:
        return None
    return signal.SIGTERM if found.group(1) == "Terminated" else signal.SIGINT


def stop_message(error: BaseException) -> str:
    """The line of a command stopped by a signal: what an :class:`Interrupted` says it kept, else
    ``"stopped by SIGTERM"``, with the error the stop caused if it is no signal's own."""
    if isinstance(error, Interrupted):
        return str(error)
    if isinstance(error, (KeyboardInterrupt, SystemExit)):
        return f"stopped by {signal_name()}"
    return f"stopped by {signal_name()} ({type(error).__name__}: {one_line(str(error))})"


def exit_status() -> int:
    """The exit status of a command stopped by :func:`received_signal` (130 for a bare Ctrl-C)."""
    return SIGNAL_STATUS.get(received_signal(), SIGNAL_STATUS[signal.SIGINT])


def record_signal(signum: int) -> None:
    """Remember that ``signum`` came (see :func:`received_signal`); a handler that runs before
    the command's own calls it (see ``training.SigtermSeenFirst``)."""
    _received.append(signum)


def _on_sigint(signum, frame) -> None:
    record_signal(signum)
    raise KeyboardInterrupt


def _on_sigterm(signum, frame) -> None:
    record_signal(signum)
    if signal.getsignal(signal.SIGTERM) is _on_sigterm:
        raise Terminated()
    # another handler called this one after its own: Lightning's, while a trainer fits, which
    # stops training at the end of the current step (a checkpoint of a whole step, not of half
    # an optimiser update) by raising its SIGTERMException


@contextmanager
def signals_stop_the_command() -> Iterator[None]:
    """While the block runs, SIGINT and SIGTERM raise ``KeyboardInterrupt`` / :class:`Terminated`
    and are remembered (:func:`received_signal`); the previous handlers come back after.

    A signal a parent process set to be ignored (a background job of a shell ignores SIGINT)
    stays ignored, and so does one a caller handles its own way; outside the main thread,
    where Python cannot set handlers, nothing changes.
    """
    _received.clear()
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signal.SIGINT: signal.getsignal(signal.SIGINT), signal.SIGTERM: signal.getsignal(signal.SIGTERM)}
    if previous[signal.SIGINT] is signal.default_int_handler:
        signal.signal(signal.SIGINT, _on_sigint)
    if previous[signal.SIGTERM] == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


def one_line(text: str) -> str:
    """``text`` with its lines joined by spaces: an error or a warning on the command line is one line."""
    return " ".join(line.strip() for line in str(text).splitlines() if line.strip())


def parse_options(pairs: Sequence[str]) -> dict:
    """``["key=value", ...]`` -> ``{key: value}``, values read as JSON when they parse as JSON.

    ``hidden_size=32`` gives an int, ``channels=[16,32]`` a list, ``name=abc`` the string "abc".
    """
    options = {}
    for pair in pairs:
        key, separator, text = pair.partition("=")
        if not separator or not key:
            raise CommandError(f"expected key=value, got {pair!r}")
        try:
            options[key] = json.loads(text)
        except json.JSONDecodeError:
            options[key] = text
    return options


def parse_classes(text: str | None) -> list[str] | None:
    """``"Dog,Cat"`` -> ``["Dog", "Cat"]``; None stays None (classes discovered from the data)."""
    if text is None:
        return None
    classes = [name.strip() for name in text.split(",") if name.strip()]
    if not classes:
        raise CommandError(f"--classes names no class: {text!r}")
    return classes


def audio_extensions() -> tuple[str, ...]:
    """Extensions (lowercase, with the dot) of the formats the installed soundfile decodes
    (see ``protocols.uris.FORMAT_EXTENSIONS``; a format it does not list is looked for under
    its own name, ".xyz" for "XYZ"), sorted."""
    import soundfile

    found = set()
    for name in soundfile.available_formats():
        found.update(FORMAT_EXTENSIONS.get(name, (f".{name.lower()}",)))
    return tuple(sorted(found))


def find_audio_files(paths: Iterable[str | Path]) -> list[Path]:
    """Audio files among ``paths``: files as given, folders searched recursively (sorted).

    Folders are searched for every format soundfile decodes (:func:`audio_extensions`).
    Raises ``CommandError`` for a missing path, when nothing is found, or when two files
    share a uri (``a/x.wav`` and ``b/x.wav``, or ``x.ogg`` and ``x.mp3``): outputs are keyed
    by uri (score files, RTTM), so one would overwrite the other.
    """
    extensions = audio_extensions()
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.suffix.lower() in extensions and p.is_file()))
        elif path.is_file():
            found.append(path)
        else:
            raise CommandError(f"no such file or folder: {path}")
    if not found:
        raise CommandError("no audio file (" + ", ".join(extensions) + ") found in " + ", ".join(map(str, paths)))
    by_uri: dict[str, Path] = {}
    for path in found:
        uri = uri_of(path.name)
        if uri in by_uri and by_uri[uri] != path:
            raise CommandError(f"{by_uri[uri]} and {path} have the same uri {uri!r}, under which outputs are "
                               "written: rename one, or give them to separate runs")
        by_uri[uri] = path
    return list(by_uri.values())


def read_durations(path: str | Path) -> dict[str, float]:
    """``filename<TAB>duration`` file (a header line allowed) -> ``{filename: seconds}``."""
    from audiotask.metrics.events import read_durations as read

    if not Path(path).is_file():
        raise CommandError(f"no such file: {path}")
    try:
        return read(path)
    except ValueError as error:
        raise CommandError(str(error)) from None


def audio_durations(folder: str | Path, filenames: Iterable[str]) -> dict[str, float]:
    """Durations (seconds) of ``filenames``, read from the headers of the files under ``folder``.

    A name is a file's name (``clip.wav``) or its uri (``clip``), as ground truths name files.
    """
    import soundfile

    found = find_audio_files([folder])
    files = {path.name: path for path in found}
    by_uri = {uri_of(path.name): path for path in found}
    durations = {}
    for filename in filenames:
        path = files.get(filename, by_uri.get(uri_of(filename)))
        if path is None:
            raise CommandError(f"{filename} is not under {folder}: give its duration with --durations")
        durations[filename] = soundfile.info(str(path)).duration
    return durations


def describe_checkpoint_mismatch(checkpoint: str | Path, architecture: str, arguments: Mapping[str, Any]) -> str | None:
    """How the model a Lightning checkpoint was saved from differs from ``architecture(**arguments)``.

    Read from the checkpoint's manifest (``checkpoint["audiotask"]``, see
    ``Model.on_save_checkpoint``); None when it tells no difference (or there is none).

    Parameters
    ----------
    checkpoint : path of a ``.ckpt`` file
    architecture : registered name of the current model's class (``architecture_name``)
    arguments : the current model's constructor arguments (``dict(model.hparams)``)
    """
    import torch

    try:
        saved = torch.load(checkpoint, map_location="cpu", weights_only=True).get("audiotask")
    except Exception:  # only an explanation is lost: the caller has its own error
        return None
    if not isinstance(saved, Mapping):
        return None
    if saved.get("architecture") != architecture:
        return (f"{checkpoint} holds a {saved.get('architecture')} model, not a {architecture}: resume with "
                f"--model {saved.get('architecture')} and that run's --model-option values")

    def plain(value):  # tuples and lists compare alike, as in a JSON manifest
        return json.loads(json.dumps(value, default=str))

    theirs, ours = plain(dict(saved.get("arguments", {}))), plain(dict(arguments))
    differ = [key for key in sorted(set(theirs) | set(ours)) if theirs.get(key) != ours.get(key)]
    if not differ:
        return None
    shown = ", ".join(f"{key}={json.dumps(theirs.get(key))} there, {json.dumps(ours.get(key))} here" for key in differ)
    options = " ".join(f"--model-option {key}={json.dumps(theirs[key], separators=(',', ':'))}"
                       for key in differ if key in theirs)
    return f"{checkpoint} was saved from a {architecture} with other arguments ({shown}): resume with {options}"


def model_options(args) -> dict:
    """Constructor arguments of ``audiotask train``'s model: the task's defaults for the CRNN
    (its registry entry's ``model_defaults``), overridden by ``--model-option``."""
    from audiotask.tasks import registry

    options = parse_options(args.model_option)
    if args.model != "CRNN":
        return options
    defaults = registry.resolve(args.task).model_defaults
    return {**{key: list(value) if isinstance(value, tuple) else value for key, value in defaults}, **options}


def resume_mismatch(args) -> str | None:
    """:func:`describe_checkpoint_mismatch` of ``audiotask train``'s ``--resume`` checkpoint and the
    model its ``--model`` and ``--model-option`` build; None when that cannot tell."""
    try:
        import audiotask.models
        from audiotask.core.architectures import architecture_name

        model = getattr(audiotask.models, args.model)(**model_options(args))
        return describe_checkpoint_mismatch(args.resume, architecture_name(type(model)), dict(model.hparams))
    except Exception:  # called while reporting another error: never raise a new one
        return None


#: warnings that say nothing actionable to a command-line user
_NOISE = (
    r".*does not define the 'scope'",  # pyannote.database, for protocols without speaker labels
    r".*`IterableDataset` has `__len__` defined",  # the task gives each worker its own chunks
    r".*is smaller than the logging interval",  # tiny data sets log once per epoch: fine
    r".*`isinstance\(treespec, LeafSpec\)` is deprecated",  # Lightning against a newer torch
)


def quiet_warnings() -> None:
    """Silence known, harmless warnings (Lightning's own noise is ``training.quiet_lightning``'s)."""
    import warnings

    for message in _NOISE:
        warnings.filterwarnings("ignore", message=message)
