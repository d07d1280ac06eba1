"""Ready-made tasks."""

from audiotask.tasks.sound_event_detection import SoundEventDetection
from audiotask.tasks.voice_activity_detection import VoiceActivityDetection

__all__ = ["VoiceActivityDetection", "SoundEventDetection"]
