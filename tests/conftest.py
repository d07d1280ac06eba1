import os
import warnings

import pytest

# keep tests on the two cores CI has, and quiet about Lightning's tips
os.environ.setdefault("OMP_NUM_THREADS", "2")
warnings.filterwarnings("ignore", message=".*does not define the 'scope'.*")


@pytest.fixture
def tiny_protocol(tmp_path):
    """A generated sound event protocol: 3 train, 1 development, 1 test file of 6 s."""
    from audiotask.testing.dummies import load_protocol, make_sound_event_protocol

    yml = make_sound_event_protocol(tmp_path / "data", name="Tiny")
    return load_protocol(yml, "Tiny.SpeakerDiarization.Events")
