"""Where a task's prepared metadata lives, and how it gets there once.

A :class:`MetadataStore` is one protocol's metadata for one preparation (see
``engine.preparation``), in a cache folder named by the protocol's fingerprint and the
preparation's parameters. It prepares the metadata when the folder lacks it, or again when
an audio file changed since (the fingerprint does not read every audio file; the files'
stamps are in the metadata), under a file lock, so that processes preparing the same folder
at once do the work once; a prepared folder is only read (a read-only cache serves).
"""

from __future__ import annotations

import warnings
from pathlib import Path

from audiotask.engine.locks import file_lock
from audiotask.engine.metadata import ProtocolMetadata
from audiotask.engine.preparation import Preparation, ProtocolFiles, build_metadata, paused_gc
from audiotask.protocols.fingerprint import protocol_fingerprint


class MetadataStore:
    """The prepared metadata of ``protocol`` for ``preparation`` under ``cache / "metadata"``.

    Parameters
    ----------
    protocol : pyannote.database protocol
    preparation : Preparation
        What the metadata depends on besides the protocol (subsets, chunk duration, attributes).
    cache : Path
        The cache root (the task's ``cache``).
    owner : str
        Who asks (a task's class name), named in warnings.
    """

    def __init__(self, protocol, preparation: Preparation, cache: Path, *, owner: str):
        self.protocol, self.preparation, self.cache, self.owner = protocol, preparation, Path(cache), owner
        self._files = None
        self._folder = None
        self._audio_checked = False

    def protocol_files(self) -> ProtocolFiles:
        """The protocol's files, read at most once (fingerprint and preparation share them)."""
        if self._files is None:
            self._files = ProtocolFiles(self.protocol)
        return self._files

    def forget_files(self) -> None:
        """Drop the files read for a preparation (a later one reads the protocol afresh)."""
        self._files = None

    def folder(self) -> Path:
        """Cache folder of the metadata, computed once: the fingerprint may read every file of
        the protocol (see ``protocols.fingerprint``)."""
        if self._folder is None:
            with paused_gc():
                key = protocol_fingerprint(
                    self.protocol, self.preparation.subsets, self.preparation.parameters(),
                    files=self.protocol_files(), stored=self.preparation.stored_keys(),
                )
            self._folder = self.cache / "metadata" / key
        return self._folder

    def load(self) -> ProtocolMetadata:
        """The prepared metadata, prepared first when missing or when audio files changed."""
        try:
            return self._prepared()
        finally:
            self.forget_files()  # the files were read for this preparation only

    def _prepared(self) -> ProtocolMetadata:
        folder = self.folder()
        if ProtocolMetadata.exists(folder):
            metadata = ProtocolMetadata.load(folder)
            # a task loads twice (prepare_data, then setup): the audio files are checked once
            if self._audio_checked or not metadata.changed_audio():
                self._audio_checked = True
                return metadata  # nothing written, nothing locked: a read-only cache serves
        # held from the check to the save: a process preparing the same folder meanwhile
        # waits, then finds it prepared (or prepared again, after an audio file changed)
        with file_lock(folder.with_name(f"{folder.name}.lock"), f"preparing metadata into {folder}"):
            if ProtocolMetadata.exists(folder):
                metadata = ProtocolMetadata.load(folder)
                changed = metadata.changed_audio()
                if not changed:
                    self._audio_checked = True
                    return metadata
                warnings.warn(
                    f"{self.owner}: {len(changed)} audio file(s) changed since the metadata in {folder} "
                    f"was prepared ({', '.join(map(repr, changed[:3]))}{', ...' if len(changed) > 3 else ''}): preparing it again."
                )
                self.forget_files()  # read the protocol afresh
            build_metadata(self.protocol_files(), self.preparation).save(folder, replace=True)
        self._audio_checked = True
        return ProtocolMetadata.load(folder)
