"""The seed tutorial's SoundEventDetection task, as a user writes it once its typos are fixed."""

import math
from typing import Callable, Optional, Tuple, Union

import numpy as np
from pyannote.core import Segment, SlidingWindow

from audiotask.core.task import Problem, Resolution, Specifications, Task
from audiotask.models import CRNN
from audiotask.testing.dummies import load_protocol, make_sound_event_protocol
from audiotask.utils.random import create_rng_for_worker
from helpers import quiet_trainer


class SoundEventDetection(Task):
    """Sound event detection"""

    def __init__(
        self,
        protocol,
        duration: float = 5.0,
        min_duration: Optional[float] = None,
        warm_up: Union[float, Tuple[float, float]] = 0.0,
        batch_size: int = 32,
        num_workers: Optional[int] = None,
        pin_memory: bool = False,
        augmentation: Optional[Callable] = None,
        **other_params,
    ):
        super().__init__(
            protocol,
            duration=duration,
            min_duration=min_duration,
            warm_up=warm_up,
            batch_size=batch_size,
            num_workers=num_workers,
            pin_memory=pin_memory,
            augmentation=augmentation,
        )

    def setup(self, stage=None):
        if stage == "fit":
            self.train_metadata_ = list()
            for training_file in self.protocol.train():
                self.train_metadata_.append({
                    "audio": training_file["audio"],
                    "duration": training_file["duration"],
                    "annotation": training_file["annotation"],
                })

            classes = set()
            for training_file in self.train_metadata_:
                classes.update(training_file["annotation"].labels())
            classes = sorted(classes)

            self.specifications = Specifications(
                problem=Problem.MULTI_LABEL_CLASSIFICATION,
                resolution=Resolution.CHUNK,
                duration=self.duration,
                classes=classes)

            if not self.has_validation:
                return

            self.validation_metadata_ = list()
            for validation_file in self.protocol.development():
                self.validation_metadata_.append({
                    "audio": validation_file["audio"],
                    "num_samples": math.floor(validation_file["duration"] / self.duration),
                    "annotation": validation_file["annotation"],
                })

    def train__iter__(self):
        rng = create_rng_for_worker(self.model.current_epoch)
        classes = self.specifications.classes
        num_classes = len(classes)
        while True:
            random_training_file, *_ = rng.choices(self.train_metadata_, k=1)
            random_start_time = rng.uniform(0, random_training_file["duration"] - self.duration)
            random_chunk = Segment(random_start_time, random_start_time + self.duration)
            X, _ = self.model.audio.crop(random_training_file["audio"], random_chunk, fixed=self.duration)
            y = np.zeros((num_classes,))
            active_classes = random_training_file["annotation"].crop(random_chunk).labels()
            for active_class in active_classes:
                y[classes.index(active_class)] = 1
            yield {'X': X, 'y': y}

    def train__len__(self):
        train_duration = sum(training_file["duration"] for training_file in self.train_metadata_)
        return max(self.batch_size, math.ceil(train_duration / self.duration))

    def val__getitem__(self, sample_idx):
        classes = self.specifications.classes
        num_classes = len(classes)
        num_samples = np.cumsum([
            validation_file["num_samples"] for validation_file in self.validation_metadata_])
        file_idx = np.where(num_samples > sample_idx)[0][0]
        validation_file = self.validation_metadata_[file_idx]
        idx = sample_idx - (num_samples[file_idx] - validation_file["num_samples"])
        chunk = SlidingWindow(start=0., duration=self.duration, step=self.duration)[idx]
        X, _ = self.model.audio.crop(validation_file["audio"], chunk, fixed=self.duration)
        y = np.zeros((num_classes,))
        active_classes = validation_file["annotation"].crop(chunk).labels()
        for active_class in active_classes:
            y[classes.index(active_class)] = 1
        return {'X': X, 'y': y}

    def val__len__(self):
        return sum(validation_file["num_samples"]
                   for validation_file in self.validation_metadata_)


def test_tutorial_task_trains_and_validates_with_crnn(tmp_path):
    yml = make_sound_event_protocol(tmp_path, name="Tutorial", files_per_subset=(1, 1, 1), duration=8.0)
    protocol = load_protocol(yml, "Tutorial.SpeakerDiarization.Events")
    task = SoundEventDetection(protocol, duration=2.0, batch_size=4, num_workers=0)
    model = CRNN(task=task)
    trainer = quiet_trainer(max_epochs=2)
    trainer.fit(model)

    assert trainer.current_epoch == 2
    training_labels = next(protocol.train())["annotation"].labels()
    assert model.specifications.classes == sorted(training_labels)
    assert model.specifications.resolution is Resolution.CHUNK
    # one epoch = the training set's duration in chunks, at least one batch: 4 samples
    assert task.train__len__() == 4
    assert task.val__len__() == 4
    metrics = trainer.callback_metrics
    assert np.isfinite(metrics["train/loss"].item())
    assert np.isfinite(metrics["val/loss"].item())
    assert "val/auroc" in metrics
    # the head follows the specifications
    assert model.head.classifier.out_features == len(model.specifications.classes)


def test_tutorial_lists_tasks():
    from audiotask.tasks import __all__ as TASKS

    assert "VoiceActivityDetection" in TASKS and "SoundEventDetection" in TASKS
