"""Published pretrained networks brought in as ordinary audiotask models.

Each source converts a network's published weights into an audiotask model folder
(``model.safetensors`` + ``audiotask.json``) of a registered architecture: the weights are
read as data (safetensors, or ``torch.load(weights_only=True)``), never by running code
shipped with them, and the published model's own preprocessing is part of the
architecture, so that the imported model's outputs match the original's.

:data:`SOURCES` names them for ``audiotask import SOURCE``, as ``"module:function"``
strings imported when used (the command line's help must stay light).
"""

#: source name -> (``"module:function"`` converting it, one line saying what it is)
SOURCES: dict[str, tuple[str, str]] = {
    "silero-vad": ("audiotask.pretrained.silero_vad:import_silero_vad",
                   "Silero VAD's 16 kHz network, from the weights the silero-vad package ships "
                   "(a FRAME speech detector for --task vad)"),
    "resemblyzer": ("audiotask.pretrained.resemblyzer:import_resemblyzer",
                    "resemblyzer's GE2E speaker encoder, from the pretrained.pt the package ships "
                    "(256-dimensional embeddings for --task embedding)"),
    "wespeaker": ("audiotask.pretrained.wespeaker:import_wespeaker",
                  "a WeSpeaker ResNet speaker-embedding checkpoint (--weights FILE, e.g. its avg_model.pt; "
                  "embeddings for --task embedding)"),
    "panns": ("audiotask.pretrained.panns:import_panns",
              "a PANNs CNN14 or CNN10 AudioSet tagging checkpoint (--weights FILE, e.g. Cnn14_mAP=0.431.pth; "
              "527 classes for --task tagging)"),
    "beats": ("audiotask.pretrained.beats:import_beats",
              "a BEATs encoder checkpoint (--weights FILE, e.g. BEATs_iter3.pt; frame embeddings, and AudioSet "
              "tags when the checkpoint is a fine-tuned one)"),
}

#: sources that are a published checkpoint layout rather than a package: --weights is required
FORMATS = ("wespeaker", "panns", "beats")


def package_file(package: str, relative: str, *, install: str):
    """``relative`` below the installed ``package``'s folder, located without importing the
    package (``importlib.util.find_spec`` runs none of its code); ``FileNotFoundError`` saying
    ``install`` (how to install it) when it is missing."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"{package} is not installed: {install} (or give --weights FILE)")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the installed {package} package has no {relative}")
    return path


def weights_file(weights, *, default=None, source: str = "", example: str = ""):
    """The weights file to convert: ``weights``, else ``default()`` (a package's file), else
    ``FileNotFoundError`` saying that ``source`` needs ``--weights`` (e.g. ``example``); a path
    that is no file is ``FileNotFoundError`` naming it."""
    from pathlib import Path

    if weights is None and default is None:
        raise FileNotFoundError(f"{source}: give --weights FILE (the published checkpoint, e.g. {example})")
    path = Path(weights) if weights is not None else default()
    if not path.is_file():
        raise FileNotFoundError(f"no such weights file: {path}")
    return path


def first_line(error: BaseException) -> str:
    """The first line of ``error``'s message (its type's name when it has none)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def load_checkpoint_data(path, *, allowed_globals=()):
    """``torch.load(path, weights_only=True)``: tensors and plain containers only (and
    ``allowed_globals``, data constructors such as numpy's), never code; ``ValueError`` in one
    line naming ``path`` when the file holds anything else or is no checkpoint."""
    import pickle

    import torch

    # before torch 2.6 there are no (function, name) allow-list entries: plain weights_only then
    allowed = list(allowed_globals) if torch.torch_version.TorchVersion(torch.__version__) >= (2, 6) else []
    try:
        if allowed:
            with torch.serialization.safe_globals(allowed):
                return torch.load(path, map_location="cpu", weights_only=True)
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as error:
        raise ValueError(f"{path}: not a checkpoint of tensors and plain values ({first_line(error)})") from None


def check_layout(state, expected, *, source: str, network: str) -> None:
    """``ValueError`` unless ``state`` has exactly the names and shapes of ``expected`` (two
    state dicts): one line naming ``source`` and the first mismatching key, then how many
    keys are missing, unexpected or of another shape."""
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    wrong = sorted(name for name in set(expected) & set(state) if tuple(state[name].shape) != tuple(expected[name].shape))
    if not (missing or unexpected or wrong):
        return
    if wrong:
        first = f"{wrong[0]!r} has shape {tuple(state[wrong[0]].shape)}, {network} has {tuple(expected[wrong[0]].shape)}"
    elif missing:
        first = f"no {missing[0]!r}"
    else:
        first = f"unexpected {unexpected[0]!r}"
    counts = f"{len(missing)} missing, {len(unexpected)} unexpected, {len(wrong)} of another shape"
    raise ValueError(f"{source}: not {network}: {first} ({counts})")
