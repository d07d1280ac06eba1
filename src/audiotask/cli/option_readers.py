"""How ``audiotask train`` reads the text of a task's own options into constructor values.

The task registry names these readers as ``"module:function"`` strings (``TaskOption.read``):
they are imported when an option is given, so that ``--help`` stays light. Each raises
``CommandError`` naming the option and what it expected.
"""

from __future__ import annotations

from pathlib import Path

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
