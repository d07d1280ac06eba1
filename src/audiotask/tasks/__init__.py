"""Ready-made tasks, one per entry of :mod:`audiotask.tasks.registry`.

``from audiotask.tasks import SoundEventDetection`` imports the task's module on first use
only: the command line imports the registry from this package to build its help, which
must not pull in torch and Lightning.
"""

from audiotask.tasks.registry import TASKS

__all__ = [entry.class_name for entry in TASKS]


def __getattr__(name: str):
    for entry in TASKS:
        if entry.class_name == name:
            return entry.load()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
