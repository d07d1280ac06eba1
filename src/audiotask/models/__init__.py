"""Model architectures."""

from audiotask.models.crnn import CRNN
from audiotask.models.debug import Debug

__all__ = ["CRNN", "Debug"]
