"""audiotask: train and run audio deep-learning models, organised around tasks.

Heavy modules (torch, lightning) load on first use of the names below, so that
``import audiotask`` and the command line start fast.
"""

from __future__ import annotations

import importlib
import warnings

__version__ = "0.1.0"

# sed_scores_eval imports dcase_util, which imports the deprecated pkg_resources and warns
# on every run; setuptools is pinned below 81 for it (pyproject.toml), so the warning says
# nothing a user can act on.
warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning, module="dcase_util")

_LAZY = {
    "Model": "audiotask.core.model",
    "Audio": "audiotask.core.audio",
    "Inference": "audiotask.inference.inference",
    "Task": "audiotask.core.task",
    "Specifications": "audiotask.core.specifications",
    "Problem": "audiotask.core.specifications",
    "Resolution": "audiotask.core.specifications",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'audiotask' has no attribute {name!r}")
