"""The metadata cache key: cheap for plain registry protocols, by content for anything else."""

import numpy as np
import pytest
from pyannote.core import Annotation, Segment, Timeline
from pyannote.database import FileFinder, registry
from pyannote.database.protocol import SpeakerDiarizationProtocol

from audiotask.models import Debug
from audiotask.protocols import fingerprint
from audiotask.core.protocol_files import prepare_protocol
from audiotask.protocols.fingerprint import protocol_fingerprint
from audiotask.tasks import SoundEventDetection
from audiotask.testing.dummies import load_protocol, make_sound_event_protocol

NAME = "Fp.SpeakerDiarization.Events"
PARAMETERS = {"task": "SoundEventDetection", "duration": 2.0}


def make_task(protocol, tmp_path):
    return SoundEventDetection(protocol, duration=2.0, batch_size=2, num_workers=0, cache=tmp_path / "cache")


@pytest.fixture
def database_yml(tmp_path):
    """A generated protocol (2 train, 1 development, 1 test file of 6 s), loaded in the registry."""
    yml = make_sound_event_protocol(tmp_path / "data", name="Fp", files_per_subset=(2, 1, 1), events_per_file=2)
    registry.load_database(str(yml))
    return yml


def with_duration(value: float):
    return registry.get_protocol(NAME, preprocessors={"audio": FileFinder(), "duration": lambda file: value})


@pytest.mark.filterwarnings("ignore:.*end after the audio", "ignore:.*labels outside", "ignore:.*precomputed key")
def test_user_durations_get_their_own_metadata(database_yml, tmp_path):
    tasks = [make_task(with_duration(value), tmp_path) for value in (6.0, 3.0)]
    assert tasks[0].metadata_folder() != tasks[1].metadata_folder()
    for task, value in zip(tasks, (6.0, 3.0)):
        Debug(task=task)
        task.prepare_data()
        task.setup("fit")
        np.testing.assert_array_equal(task.metadata.subsets["train"].duration, [value, value])


def test_user_preprocessor_inside_a_wrapper_is_seen(database_yml):
    def annotated(file):
        return Timeline([Segment(0.0, 1.0)], uri=file["uri"])

    plain = prepare_protocol(load_protocol(database_yml, NAME))
    custom = prepare_protocol(registry.get_protocol(NAME, preprocessors={"audio": FileFinder(), "annotated": annotated}))
    # our wrapper around pyannote.database's crop_annotated around the user's function
    assert protocol_fingerprint(custom, ["train"], PARAMETERS) != protocol_fingerprint(plain, ["train"], PARAMETERS)


def test_plain_registry_protocol_keeps_the_cheap_fingerprint(database_yml, tmp_path, monkeypatch):
    protocol = load_protocol(database_yml, NAME)
    task = make_task(protocol, tmp_path)  # installs our duration / annotated / annotation wrappers

    def iterated(*args, **kwargs):
        raise AssertionError("the fingerprint iterated the protocol")

    monkeypatch.setattr(fingerprint, "_rows", iterated)
    first = task.metadata_folder()
    assert task.metadata_folder() == first
    assert make_task(load_protocol(database_yml, NAME), tmp_path).metadata_folder() == first


class Lookup(dict):
    """A dict-backed preprocessor: the value stored for the file's uri."""

    def __call__(self, file):
        return self[file["uri"]]


@pytest.mark.parametrize(
    "preprocessors",
    [
        {"audio": FileFinder(), "database": lambda file: "Fp"},
        {"audio": FileFinder(), "duration": Lookup(train00=6.0, train01=6.0)},
        {"audio": "{uri}.wav"},  # a template: pyannote.database makes it a function
        {"audio": FileFinder(registry=type(registry)())},  # not the registry we hash
    ],
    ids=["lambda", "dict-backed", "template", "own-registry"],
)
def test_unknown_preprocessor_values_are_read_and_hashed(database_yml, monkeypatch, preprocessors):
    seen = []
    rows = fingerprint._rows
    monkeypatch.setattr(fingerprint, "_rows", lambda files, subsets, keys: seen.append(list(keys)) or rows(files, subsets, keys))
    # the user's entry we cannot vouch for (pyannote.database adds its own to the dict)
    (key,) = [k for k in preprocessors if k != "audio"] or ["audio"]
    protocol = prepare_protocol(registry.get_protocol(NAME, preprocessors=preprocessors))
    protocol_fingerprint(protocol, ["train"], PARAMETERS)
    # only those entries are read, not the whole content
    assert seen == [[key]]


class InMemory(SpeakerDiarizationProtocol):
    """A protocol built in Python (not from a database.yml): one training file."""

    def __init__(self, audio, uem: Timeline, **kwargs):
        super().__init__(**kwargs)
        self.audio, self.uem = audio, uem

    def train_iter(self):
        annotation = Annotation(uri="clip")
        annotation[Segment(0.5, 1.5)] = "Dog"
        yield {"uri": "clip", "database": "Mem", "audio": self.audio, "annotated": self.uem, "annotation": annotation}


def test_changed_uem_of_a_python_protocol_changes_the_fingerprint(database_yml):
    audio = database_yml.parent / "audio" / "train00.wav"

    def key(*segments):
        protocol = prepare_protocol(InMemory(audio, Timeline(list(segments), uri="clip")))
        return protocol_fingerprint(protocol, ["train"], PARAMETERS)

    assert key(Segment(0.0, 6.0)) == key(Segment(0.0, 6.0))
    assert key(Segment(0.0, 4.0)) != key(Segment(0.0, 6.0))


def test_same_inputs_same_fingerprint(database_yml):
    def key(value: float, parameters=PARAMETERS):
        return protocol_fingerprint(prepare_protocol(with_duration(value)), ["train", "development"], parameters)

    assert key(6.0) == key(6.0)
    assert key(6.0) != key(6.0, {**PARAMETERS, "duration": 3.0})
    plain = load_protocol(database_yml, NAME)
    assert protocol_fingerprint(plain, ["train"], PARAMETERS) == protocol_fingerprint(plain, ["train"], PARAMETERS)
