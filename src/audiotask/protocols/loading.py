"""One way to get a protocol: its ``database.yml`` files loaded, then the protocol by name.

pyannote.database keeps one registry per process: :func:`load_protocol` loads the given
configuration files into it (a file loaded twice is read again, which pyannote.database
allows) and returns the protocol with audio found by its ``FileFinder`` unless the caller
says otherwise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Optional, Union


class UnknownProtocolError(ValueError):
    """A protocol name that the loaded configuration files do not define."""


def load_protocol(
    name: str, databases: Iterable[Union[str, Path]] = (), *, preprocessors: Optional[dict] = None,
):
    """Protocol ``name`` (``Database.Task.Protocol``) from the ``database.yml`` files
    ``databases`` (plus those pyannote.database already knows: ``$PYANNOTE_DATABASE_CONFIG``).

    ``preprocessors``: pyannote.database's, by key (default: ``{"audio": FileFinder()}``).
    ``FileNotFoundError`` naming a configuration file that does not exist;
    :class:`UnknownProtocolError` naming the protocol when none of that name is defined.
    """
    from pyannote.database import FileFinder, registry

    for database in databases:
        if not Path(database).is_file():
            raise FileNotFoundError(f"no such database file: {database}")
        registry.load_database(str(database))
    try:
        return registry.get_protocol(name, preprocessors=preprocessors or {"audio": FileFinder()})
    except (KeyError, ValueError) as error:  # pyannote.database raises either, by what is missing
        raise UnknownProtocolError(f"unknown protocol {name!r} ({error})") from None
