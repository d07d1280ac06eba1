"""Ready-made tasks."""

from audiotask.tasks.sound_event_detection import DCASE_CLASSES, SoundEventDetection
from audiotask.tasks.voice_activity_detection import VoiceActivityDetection

__all__ = ["VoiceActivityDetection", "SoundEventDetection"]
