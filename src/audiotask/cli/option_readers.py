"""How ``audiotask train`` reads the text of a task's own options into constructor values.

The task registry names these readers as ``"module:function"`` strings (``TaskOption.read``):
they are imported when an option is given, so that ``--help`` stays light. Each raises
``CommandError`` naming the option and what it expected. :func:`check_model_options` does as
much for ``--model-option``, from the architecture's constructor annotations.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence

from audiotask.cli.common import CommandError, parse_options


def parse_shares(text: str) -> dict[str, float]:
    """``"strong=1,weak=1,none=2"`` -> ``{"strong": 1.0, "weak": 1.0, "none": 2.0}``."""
    shares = {}
    for item in text.split(","):
        kind, _, value = item.partition("=")
        try:
            shares[kind.strip()] = float(value)
        except ValueError:
            raise CommandError(f"--kind-proportions: expected KIND=SHARE items (strong, weak, none), got {item!r}") from None
    return shares


def parse_range(text: str, flag: str = "--snr-range") -> tuple[float, float]:
    """``"0,20"`` -> ``(0.0, 20.0)``; ``CommandError`` unless two numbers, the first not above the
    second (equal: one fixed value)."""
    try:
        low, high = (float(part) for part in text.split(","))
    except ValueError:
        raise CommandError(f"{flag}: expected LOW,HIGH (two numbers), got {text!r}") from None
    if not low <= high:
        raise CommandError(f"{flag}: expected LOW <= HIGH, got {text!r}")
    return low, high


def noise_source(text: str):
    """``--noise``: a folder of noise recordings (a ``Path``), else a protocol's name (the protocol).

    Protocols are looked up in pyannote.database's registry, where ``load_protocol`` has
    loaded the ``--database`` files by the time the task is built.
    """
    if Path(text).is_dir():
        return Path(text)
    if text.count(".") < 2 or Path(text).exists():  # Database.Task.Protocol
        raise CommandError(f"--noise: {text} is neither a folder of noise recordings nor a protocol name")
    from audiotask.protocols.loading import UnknownProtocolError, load_protocol

    try:
        return load_protocol(text)
    except UnknownProtocolError as error:
        raise CommandError(f"--noise: no such folder, nor a known protocol: {error}") from None


def detection_augmentation(pairs: list[str]):
    """``DetectionAugmentation`` from ``--augmentation-option KEY=VALUE`` pairs (``none=true``: none)."""
    from audiotask.augmentation.recipe import DetectionAugmentation

    options = parse_options(pairs)
    if options.pop("none", False):
        if options:
            raise CommandError("--augmentation-option none=true takes no other augmentation option")
        return DetectionAugmentation.none()
    try:
        return DetectionAugmentation(**options)
    except (TypeError, ValueError) as error:
        raise CommandError(f"--augmentation-option: {error}") from None


def dynamic_mixing(pairs: list[str]):
    """``DynamicMixing`` from ``--mixing-option KEY=VALUE`` pairs (``events=DIR`` required)."""
    from audiotask.tasks.sed.mixing import DynamicMixing

    options = parse_options(pairs)
    if "events" not in options:
        raise CommandError("--mixing-option needs events=FOLDER (one sub-folder of isolated clips per class)")
    try:
        return DynamicMixing(**options)
    except (TypeError, ValueError) as error:
        raise CommandError(f"--mixing-option: {error}") from None


# ---- --model-option: each value of the type its constructor argument takes ----------------
def check_model_options(architecture: type, options: dict, given: Sequence[str], examples: dict) -> None:
    """``CommandError`` for the first ``--model-option`` that ``architecture`` does not take, or
    whose value is not of the type its constructor argument is annotated with.

    ``options`` are the parsed values (see ``common.parse_options``), ``given`` the
    ``KEY=VALUE`` pairs as typed (for the message), ``examples`` a value of each argument (the
    task's default, else the constructor's) to show. An annotation this check cannot read
    lets the value through: the constructor then says what it thinks of it.
    """
    import inspect

    name = architecture.__name__
    parameters = {key: parameter for key, parameter in list(inspect.signature(architecture).parameters.items())
                  if key not in ("self", "task") and parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)}
    takes_any = any(parameter.kind is parameter.VAR_KEYWORD for parameter in inspect.signature(architecture).parameters.values())
    hints = constructor_hints(architecture)
    typed = {pair.partition("=")[0]: pair for pair in given}
    for key, value in options.items():
        if key not in parameters:
            if takes_any:
                continue
            raise CommandError(f"--model-option {typed.get(key, key)}: {name} takes no argument {key!r} (it takes "
                               f"{', '.join(parameters)})")
        annotation = hints.get(key)
        if annotation is None or accepts(annotation, value) is not False:
            continue
        example = examples.get(key, parameters[key].default)
        shown = "" if example in (None, inspect.Parameter.empty) else \
            f", e.g. {key}={json.dumps(list(example) if isinstance(example, tuple) else example, separators=(',', ':'))}"
        raise CommandError(f"--model-option {typed.get(key, key)}: {name}'s {key} takes {described(annotation)}{shown}")


def constructor_hints(architecture: type) -> dict:
    """The type annotations of ``architecture.__init__``'s arguments, resolved ({} if they cannot be)."""
    import typing

    try:
        return typing.get_type_hints(architecture.__init__)
    except Exception:  # a name only a type checker imports: no check, rather than a wrong refusal
        return {}


def _sequence_origins():
    import collections.abc

    return (list, tuple, collections.abc.Sequence, collections.abc.MutableSequence)


def _mapping_origins():
    import collections.abc

    return (dict, collections.abc.Mapping, collections.abc.MutableMapping)


def accepts(annotation, value) -> Optional[bool]:
    """Whether the JSON ``value`` fits ``annotation`` (None: an annotation this does not read).

    JSON gives ``bool``, ``int``, ``float``, ``str``, ``None``, lists and objects: an int fits a
    float, a list a sequence or a tuple, an object a mapping.
    """
    import types
    import typing

    origin, arguments = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is typing.Any:
        return True
    if origin is typing.Union or (hasattr(types, "UnionType") and origin is types.UnionType):
        verdicts = [accepts(member, value) for member in arguments]
        return True if any(verdicts) else (None if None in verdicts else False)
    if annotation is type(None):
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    if origin is typing.Literal:
        return value in arguments
    if annotation in _sequence_origins() or origin in _sequence_origins():
        if not isinstance(value, list):
            return False
        items = [member for member in arguments if member is not Ellipsis]
        if origin is tuple and arguments and arguments[-1] is not Ellipsis:  # tuple[int, int]: so many items
            if len(value) != len(items):
                return False
            verdicts = [accepts(member, item) for member, item in zip(items, value)]
        else:
            verdicts = [accepts(items[0], item) for item in value] if items else [True]
        return False if False in verdicts else (None if None in verdicts else True)
    if annotation in _mapping_origins() or origin in _mapping_origins():
        return isinstance(value, dict)
    return None


def described(annotation) -> str:
    """``"a list of int"``: what ``annotation`` takes, as the message of a refused value says it."""
    import types
    import typing

    origin, arguments = typing.get_origin(annotation), typing.get_args(annotation)
    names = {bool: "true or false", int: "an int", float: "a number", str: "a string", type(None): "null"}
    if annotation in names:
        return names[annotation]
    if origin is typing.Union or (hasattr(types, "UnionType") and origin is types.UnionType):
        return " or ".join(described(member) for member in arguments)
    if origin is typing.Literal:
        return "one of " + ", ".join(json.dumps(member) for member in arguments)
    if annotation in _sequence_origins() or origin in _sequence_origins():
        items = [member for member in arguments if member is not Ellipsis]
        if not items:
            return "a list"
        if origin is tuple and arguments[-1] is not Ellipsis:  # tuple[int, float]: so many items
            return f"a list of {len(items)} values (" + ", ".join(_bare(member) for member in items) + ")"
        return f"a list of {_bare(items[0])}"
    if annotation in _mapping_origins() or origin in _mapping_origins():
        return "a JSON object"
    return getattr(annotation, "__name__", str(annotation))


def _bare(annotation) -> str:
    """``int`` for int, a nested description otherwise (``a list of int``)."""
    return annotation.__name__ if annotation in (bool, int, float, str) else described(annotation)
