"""Model architectures."""

from audiotask.models.crnn import CRNN
from audiotask.models.debug import Debug
from audiotask.models.resemblyzer import Resemblyzer
from audiotask.models.silero_vad import SileroVAD

__all__ = ["CRNN", "Debug", "Resemblyzer", "SileroVAD"]
