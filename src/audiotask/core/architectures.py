"""Named model architectures: the only classes a saved model may ask to be rebuilt as.

A manifest names its architecture (``"CRNN"``); loading looks that name up here. No name
read from a file is ever imported: a downloaded model folder could otherwise run code
(``"this:X"`` imports the ``this`` module; ``"evilpkg.payload:X"`` imports a package
shipped beside the manifest when Python runs in the folder's parent).

Known architectures are audiotask's own models and those that installed packages declare
in the ``audiotask.models`` entry-point group, e.g. in a ``pyproject.toml``::

    [project.entry-points."audiotask.models"]
    MyNet = "mypackage.models:MyNet"

An entry point is loaded only when a manifest names it: installing a package is the act
of trust, not reading a file.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import EntryPoint, entry_points
from typing import Optional

ENTRY_POINT_GROUP = "audiotask.models"

#: audiotask's own architectures, by the name their manifests carry, as ``module:Class``:
#: imported when named (this table is ours, never read from a file), so that core does not
#: import the models, which build on core
BUILTIN: dict[str, str] = {
    "CRNN": "audiotask.models.crnn:CRNN", "Debug": "audiotask.models.debug:Debug",
    "SileroVAD": "audiotask.models.silero_vad:SileroVAD", "Resemblyzer": "audiotask.models.resemblyzer:Resemblyzer",
    "WeSpeakerResNet": "audiotask.models.wespeaker_resnet:WeSpeakerResNet", "PANNs": "audiotask.models.panns:PANNs",
    "BEATs": "audiotask.models.beats:BEATs",
}

#: how manifests written before the registry named the built-in architectures
LEGACY_NAMES: dict[str, str] = {
    "audiotask.models.crnn:CRNN": "CRNN",
    "audiotask.models.debug:Debug": "Debug",
}


def declared_entry_points() -> list[EntryPoint]:
    """Entry points of the ``audiotask.models`` group, in installed packages (none loaded)."""
    return list(entry_points(group=ENTRY_POINT_GROUP))


def known_architectures() -> list[str]:
    """Names a manifest may give as its architecture: built-in first, then declared ones."""
    declared = sorted({point.name for point in declared_entry_points()} - set(BUILTIN))
    return list(BUILTIN) + declared


def load_builtin(name: str) -> type:
    """The class of audiotask's own architecture ``name`` (a key of :data:`BUILTIN`)."""
    module, _, qualname = BUILTIN[name].partition(":")
    return getattr(import_module(module), qualname)


def resolve_architecture(name: str, *, source: Optional[str] = None) -> type:
    """Model class registered as ``name`` (or an old manifest's ``module:Class`` of our own).

    Parameters
    ----------
    name : str
        The manifest's ``architecture`` field.
    source : str, optional
        Where ``name`` was read (a manifest's path), named in the error.

    Raises
    ------
    ValueError
        ``name`` is not a known architecture; nothing named in the file is imported.
    """
    name = LEGACY_NAMES.get(name, name)
    if name in BUILTIN:
        return load_builtin(name)
    for point in declared_entry_points():
        if point.name == name:
            # whether it is a Model, the caller checks (core.model builds on this module)
            return point.load()
    where = f" in {source}" if source else ""
    raise ValueError(
        f"Unknown model architecture {name!r}{where}: known architectures are "
        f"{', '.join(known_architectures())}. audiotask never imports a module named by a model file; "
        f"a package that provides an architecture declares it in the {ENTRY_POINT_GROUP!r} entry-point group."
    )


def architecture_name(cls: type) -> str:
    """Name under which ``cls`` is registered, which ``save_pretrained`` writes.

    Raises
    ------
    ValueError
        ``cls`` is not registered: a model saved under no name could never be loaded back.
    """
    value = f"{cls.__module__}:{cls.__qualname__}"
    for name, builtin in BUILTIN.items():
        if value == builtin:
            return name
    for point in declared_entry_points():
        # compared by the declared text, so that saving loads no other package's code
        if point.value.replace(" ", "") == value:
            return point.name
    raise ValueError(
        f"{cls.__qualname__} is not a registered architecture ({', '.join(known_architectures())}): "
        f"declare it as {value!r} in the {ENTRY_POINT_GROUP!r} entry-point group of its package "
        "so that a saved model can be loaded back."
    )
