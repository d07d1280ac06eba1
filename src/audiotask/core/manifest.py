"""Names of the files a saved model is made of, and the reading of its manifest: light, so
that code that only reads them (an ONNX export's runtime, the command line) need not import
the model classes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Union

#: the model's manifest: architecture, hyper-parameters, specifications (JSON)
MANIFEST = "audiotask.json"
#: the model's weights (safetensors: loading them unpickles nothing)
WEIGHTS = "model.safetensors"
#: what a manifest holds, at least (``Model.manifest``)
MANIFEST_KEYS = ("architecture", "arguments", "specifications")


def read_manifest(path: Union[str, Path]) -> dict[str, Any]:
    """The manifest at ``path`` (a model folder's ``audiotask.json``), checked to be a JSON
    object with :data:`MANIFEST_KEYS`.

    Raises ``ValueError`` in one line naming the file: not UTF-8, not JSON (with the line and
    column), or not a manifest; ``FileNotFoundError`` when it is missing.
    """
    from audiotask.io import read_text

    path = Path(path)
    try:
        manifest = json.loads(read_text(path))
    except json.JSONDecodeError as error:  # its message names a line and column, not the file
        raise ValueError(f"{path}: invalid JSON: {error} (a truncated or hand-edited file: save or import the "
                         "model again)") from error
    if not isinstance(manifest, dict):
        raise ValueError(f"{path}: not an audiotask manifest (a JSON {type(manifest).__name__}, not an object)")
    missing = [key for key in MANIFEST_KEYS if key not in manifest]
    if missing:
        raise ValueError(f"{path}: not an audiotask manifest: missing key {', '.join(map(repr, missing))}")
    return manifest
