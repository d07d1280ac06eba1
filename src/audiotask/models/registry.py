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

from importlib.metadata import EntryPoint, entry_points
from typing import Optional

from audiotask.core.model import Model
from audiotask.models.crnn import CRNN
from audiotask.models.debug import Debug

ENTRY_POINT_GROUP = "audiotask.models"

#: audiotask's own architectures, by the name their manifests carry
BUILTIN: dict[str, type[Model]] = {"CRNN": CRNN, "Debug": Debug}

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


def resolve_architecture(name: str, *, source: Optional[str] = None) -> type[Model]:
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
        return BUILTIN[name]
    for point in declared_entry_points():
        if point.name == name:
            target = point.load()
            if not (isinstance(target, type) and issubclass(target, Model)):
                raise TypeError(
                    f"Entry point {name} = {point.value} of group {ENTRY_POINT_GROUP!r} is not an audiotask Model."
                )
            return target
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
    for name, builtin in BUILTIN.items():
        if cls is builtin:
            return name
    value = f"{cls.__module__}:{cls.__qualname__}"
    for point in declared_entry_points():
        # compared by the declared text, so that saving loads no other package's code
        if point.value.replace(" ", "") == value:
            return point.name
    raise ValueError(
        f"{cls.__qualname__} is not a registered architecture ({', '.join(known_architectures())}): "
        f"declare it as {value!r} in the {ENTRY_POINT_GROUP!r} entry-point group of its package "
        "so that a saved model can be loaded back."
    )
