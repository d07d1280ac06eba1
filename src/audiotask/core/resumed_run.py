"""A checkpoint continues its own run only.

:func:`check_resumed_manifest` (called by ``Model.on_load_checkpoint``, before any weight is
loaded) refuses a run of another task, other classes, chunk duration or model arguments, in
one line naming what differs: resuming with any of them changed would go on training the
weights for something else, silently. Fine-tuning for another run is ``train --from``.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

#: the fields of a model manifest (``Model.manifest``) that a resumed run must share with the
#: checkpoint's: the versions may differ (a run resumed after an upgrade), the format too
RESUMED_FIELDS = ("architecture", "arguments", "specifications")


class ResumeMismatch(ValueError):
    """A checkpoint resumed by a run of another task, other classes, chunks or model options.

    ``differences`` says what differs, in one line, and ``what``: "task", "specifications"
    (what the run trains for: another run, or fine-tuning), "architecture" or "arguments"
    (the model: a resume with that run's model options fits). ``architecture`` is the
    checkpoint's, ``arguments`` its values of the arguments that differ (those it has).
    ``checkpoint`` (set by whoever knows the file, see ``training.fit``) names the file and
    ``hint`` (set by the command line) says what to do.
    """

    def __init__(self, differences: str, *, what: str, architecture: Optional[str] = None,
                 arguments: Optional[dict] = None):
        super().__init__(differences)
        self.differences = differences
        self.what = what
        self.architecture = architecture
        self.arguments = dict(arguments or {})
        self.checkpoint = None
        self.hint = ""

    def __str__(self) -> str:
        line = f"{self.checkpoint if self.checkpoint is not None else 'the checkpoint'} {self.differences}"
        return f"{line}: {self.hint}" if self.hint else line


def _plain(value: Any) -> Any:
    """``value`` as JSON reads it back: tuples and lists compare alike, enums by their value."""
    import json

    return json.loads(json.dumps(value, default=lambda item: getattr(item, "value", str(item))))


def _shown(value: Any) -> str:
    import json

    return json.dumps(value, separators=(",", ":")) if not isinstance(value, str) else repr(value)


def _task(specifications: dict) -> Optional[str]:
    return (specifications.get("extra") or {}).get("task")


def specification_differences(saved: dict, current: dict) -> list[str]:
    """``"duration 2.0 there, 3.0 here"`` for each field of the specifications (``to_dict``) that
    differs, the task's name aside (:func:`check_resumed_manifest` says it first)."""
    differences = []
    for key in sorted(set(saved) | set(current)):
        theirs, ours = saved.get(key), current.get(key)
        if key == "extra":
            theirs = {k: v for k, v in (theirs or {}).items() if k != "task"}
            ours = {k: v for k, v in (ours or {}).items() if k != "task"}
            if theirs == ours:
                continue
        if key == "min_duration" and theirs == saved.get("duration") and ours == current.get("duration"):
            continue  # fixed-length chunks on both sides: the duration's difference says it
        if theirs != ours:
            differences.append(f"{key} {_shown(theirs)} there, {_shown(ours)} here")
    return differences


def check_resumed_manifest(saved: Optional[Mapping[str, Any]], current: Mapping[str, Any]) -> None:
    """Raise :class:`ResumeMismatch` unless the run resuming a checkpoint is the checkpoint's run.

    ``saved`` is the manifest a checkpoint holds (``checkpoint["audiotask"]``, None for a
    checkpoint that Lightning alone wrote: nothing to compare), ``current`` the resumed model's
    (``Model.manifest()``, its task's specifications set). The run is the checkpoint's when
    its task, specifications (classes, chunk duration, resolution, warm-up...), architecture
    and model arguments are all the checkpoint's: resuming with any of them changed would
    go on training the weights for something else, silently (a voice activity detector's
    weights saved as an overlap detector, say).
    """
    if not isinstance(saved, Mapping):
        return
    saved, current = _plain({key: saved.get(key) for key in RESUMED_FIELDS}), _plain(
        {key: current.get(key) for key in RESUMED_FIELDS})
    theirs, ours = saved["specifications"] or {}, current["specifications"] or {}
    if _task(theirs) != _task(ours):
        raise ResumeMismatch(f"was trained for task {_task(theirs)!r} (classes {_shown(theirs.get('classes'))}); "
                             f"this run is for {_task(ours)!r} (classes {_shown(ours.get('classes'))})", what="task")
    differences = specification_differences(theirs, ours)
    if differences:
        raise ResumeMismatch(f"was trained with other specifications than this run's: {'; '.join(differences)}",
                             what="specifications")
    if saved["architecture"] != current["architecture"]:
        raise ResumeMismatch(f"holds a {saved['architecture']} model, not a {current['architecture']}",
                             what="architecture", architecture=saved["architecture"])
    arguments_theirs, arguments_ours = saved["arguments"] or {}, current["arguments"] or {}
    differ = [key for key in sorted(set(arguments_theirs) | set(arguments_ours))
              if arguments_theirs.get(key) != arguments_ours.get(key)]
    if differ:
        shown = ", ".join(f"{key}={_shown(arguments_theirs.get(key))} there, {_shown(arguments_ours.get(key))} here"
                          for key in differ)
        raise ResumeMismatch(f"was saved from a {current['architecture']} with other arguments ({shown})",
                             what="arguments", architecture=saved["architecture"],
                             arguments={key: arguments_theirs[key] for key in differ if key in arguments_theirs})
