"""The one rule that turns a filename into a ``uri``.

DCASE files name a clip by filename (``Y00pK0GMmE9s_70.000_80.000.wav``), pyannote and
sed_scores_eval by uri (``Y00pK0GMmE9s_70.000_80.000``). A uri may contain dots, so only a
known audio extension is removed: ``Path(name).stem`` would turn the uri
``Y_30.000_40.000`` into ``Y_30.000_40`` and lose its events.
"""

from __future__ import annotations

from pathlib import Path

#: extensions of the files of each soundfile format (``soundfile.available_formats()``'s keys)
FORMAT_EXTENSIONS = {
    "WAV": (".wav",), "WAVEX": (".wav",), "NIST": (".wav", ".sph"), "RF64": (".rf64",), "W64": (".w64",),
    "AIFF": (".aiff", ".aif", ".aifc"), "AU": (".au", ".snd"), "AVR": (".avr",), "CAF": (".caf",),
    "FLAC": (".flac",), "HTK": (".htk",), "SVX": (".svx", ".iff"), "MAT4": (".mat",), "MAT5": (".mat",),
    "MPC2K": (".mpc",), "MP3": (".mp3",), "OGG": (".ogg", ".oga", ".opus"), "PAF": (".paf",),
    "PVF": (".pvf",), "SD2": (".sd2",), "SDS": (".sds",), "IRCAM": (".sf",), "VOC": (".voc",),
    "WVE": (".wve",), "XI": (".xi",),
    # header-less samples: soundfile cannot decode them without being told their rate and encoding
    "RAW": (),
}
#: every extension of :data:`FORMAT_EXTENSIONS` (compared lowercase): what a uri is stripped
#: of, whatever this machine's soundfile decodes, so that a file names the same uri everywhere
AUDIO_EXTENSIONS = tuple(sorted({extension for extensions in FORMAT_EXTENSIONS.values() for extension in extensions}))


def has_audio_extension(filename: str) -> bool:
    """Whether ``filename`` ends with one of :data:`AUDIO_EXTENSIONS`, in any case."""
    return filename.lower().endswith(AUDIO_EXTENSIONS)


def audio_files_below(folder: str | Path) -> list[Path]:
    """The files with an audio extension in ``folder`` and its sub-folders, sorted."""
    return sorted(path for path in Path(folder).rglob("*") if path.is_file() and has_audio_extension(path.name))


def audio_files_in_folder(folder: str | Path, owner: str) -> list[Path]:
    """:func:`audio_files_below` ``folder``; ValueError, said by ``owner``, when it is no
    folder or holds no audio file."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{owner}: {folder} is not a folder.")
    found = audio_files_below(folder)
    if not found:
        raise ValueError(f"{owner}: {folder} holds no audio file.")
    return found


def uri_of(filename: str) -> str:
    """``uri`` of ``filename``: its base name, less its extension when that is an audio one.

    ``"a/Y_30.000_40.000.wav"`` -> ``"Y_30.000_40.000"``; ``"Y_30.000_40.000"`` and
    ``"notes.txt"`` keep their dots; ``"clip.WAV"`` -> ``"clip"``.
    """
    return strip_audio_extension(Path(filename).name)


def strip_audio_extension(name: str) -> str:
    """``name`` less its audio extension, if it has one (``a/b.wav`` -> ``a/b``; folders kept)."""
    # a dot at 0 starts a hidden name (".wav"), not an extension: the name would be empty
    if has_audio_extension(name) and name.rfind(".") > 0:
        return name[: name.rfind(".")]
    return name
