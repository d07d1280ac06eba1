"""Validation under DDP on CPU gives the figures of one process: two ranks (gloo) against one.

The project promises validation metrics synchronised across ranks, so that PSDS, EER and
accuracy are those of the whole development set. ``test_ddp.py`` checks that two ranks agree
with each other; this file checks that they agree with one process validating the same
weights. Each task's development set splits unequally over the two ranks (an odd number of
validation batches, the last one short): Lightning's distributed sampler then pads one rank's
share with a batch of the other, and a mean of the ranks' means, or a padded batch counted
twice, would show (both did: two ranks logged a SED val/loss of 0.351 and AUROC of 0.974 for
one process's 0.289 and 0.978, a clip accuracy of 0.857 for 0.800).

The test runs this file as a script, once with ``devices=1`` and once with ``devices=2``
(Lightning's "ddp" strategy starts the second rank by running the script again). The first
run prepares the data, trains each task's model a few steps and saves its weights; both runs load
them, call ``trainer.validate`` and write each rank's ``val/*`` figures to ``<run>/rank<k>.json``.
"""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

#: the tasks validated, each on its own tiny generated data
TASKS = ("sed", "speakers", "clips", "diarization")
#: training steps before the weights are saved: figures of a model that detects something
#: (an untrained one has a PSDS of 0, which would not tell two ways of computing it apart)
STEPS = {"sed": 60, "speakers": 4, "clips": 60, "diarization": 30}
SMALL_CRNN = dict(channels=(8, 16), time_pooling=(2, 2), n_mels=32, hidden_size=16)
#: 17 development chunks (the speakers protocol): batches of 8, 8 and 1, as the embedding task has
DIARIZATION_BATCH = 8
SED_PROTOCOL = "Odd.SpeakerDiarization.Events"
SPEAKER_PROTOCOL = "Speakers.SpeakerDiarization.Speakers"


@pytest.fixture(scope="module")
def figures(tmp_path_factory):
    """``{devices: [rank 0's record, ...]}`` of the two runs over the same data and weights."""
    from audiotask.protocols.clip_tables import write_clip_database
    from audiotask.testing.clip_corpora import make_clip_dataset
    from audiotask.testing.dummies import make_sound_event_protocol
    from audiotask.testing.speakers import make_speaker_protocol

    root = tmp_path_factory.mktemp("ddp_validation")
    # the data exist before the runs start: a rank writing them would change their mtimes
    # 3 development files of 5 s, 1-s chunks: 15 chunks in batches of 6, 6 and 3; rank 0
    # validates batches 0 and 2 (9 chunks), rank 1 batch 1 and batch 0 again (padding)
    sed = make_sound_event_protocol(root / "sed", name="Odd", duration=5.0, files_per_subset=(3, 3, 1),
                                    events_per_file=5)
    # 17 development chunks of single speakers (seed 0): batches of 8, 8 and 1
    speakers = make_speaker_protocol(root / "speakers")
    # fold 2 (validated on) holds clip k = 1 of each of 5 classes: 5 clips, batches of 2, 2 and 1
    audio, labels = make_clip_dataset(root / "clips", classes=5, clips_per_class=2, folds=2, duration=1.0)
    clips = write_clip_database(audio, labels, root / "clips" / "database.yml")
    data = {"sed": str(sed), "speakers": str(speakers), "clips": f"{root / 'clips' / 'database.yml'}:{clips}"}
    (root / "data.json").write_text(json.dumps(data))
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    records = {}
    for devices in (1, 2):  # the one-process run first: it saves the weights both runs load
        run = root / f"devices{devices}"
        done = subprocess.run([sys.executable, __file__, str(root), str(run), str(devices)],
                              env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-4000:]
        records[devices] = [json.loads((run / f"rank{rank}.json").read_text()) for rank in range(devices)]
    return records


@pytest.mark.slow
@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without torch.distributed")
@pytest.mark.parametrize("task", TASKS)
def test_two_ranks_validate_to_the_figures_of_one_process(figures, task):
    (one,), two = figures[1], figures[2]
    one, two = one[task], [rank[task] for rank in two]
    expected = {"sed": {"val/loss", "val/auroc", "val/psds1"}, "speakers": {"val/eer"},
                "clips": {"val/loss", "val/accuracy", "val/macro_f1"},
                "diarization": {"val/loss", "val/der", "val/der/confusion"}}[task]
    assert one["metrics"].keys() >= expected, one["metrics"]
    # the split the two ranks had: every chunk validated, the shares unequal, one padded
    # with a batch of the other (a distributed sampler deals out whole validation batches)
    chunks = one["chunks"]
    assert len(one["seen"]) == len(set(one["seen"])) == chunks
    assert {chunk for rank in two for chunk in rank["seen"]} == set(one["seen"])
    assert sum(len(rank["seen"]) for rank in two) > chunks  # a batch validated by both ranks
    mine, theirs = set(two[0]["seen"]), set(two[1]["seen"]) - set(two[0]["seen"])
    assert len(mine) + len(theirs) == chunks and len(mine) != len(theirs)  # unequal real shares
    # every rank logs what one process logs, the same figures
    for rank in two:
        assert rank["metrics"].keys() == one["metrics"].keys()
        for name, value in one["metrics"].items():
            assert rank["metrics"][name] == pytest.approx(value, rel=1e-6, abs=1e-9), (name, rank["metrics"], one["metrics"])


# ---- the script: one run of every task's validation, on ``devices`` processes ---------------------
def build(task: str, data: dict, cache: Path):
    """The task and its (unset) model, a small CRNN."""
    from audiotask.models import CRNN
    from audiotask.testing.dummies import load_protocol

    if task == "sed":
        from audiotask.tasks import SoundEventDetection

        made = SoundEventDetection(load_protocol(data["sed"], SED_PROTOCOL), resolution="frame", duration=1.0,
                                   batch_size=6, num_workers=0, cache=cache)
        return made, CRNN(task=made, **SMALL_CRNN)
    if task == "speakers":
        from audiotask.tasks import SpeakerEmbedding

        made = SpeakerEmbedding(load_protocol(data["speakers"], SPEAKER_PROTOCOL), speakers_per_batch=4,
                                batch_size=8, duration=1.0, dimension=16, num_workers=0, cache=cache)
        return made, CRNN(task=made, **SMALL_CRNN)
    if task == "diarization":
        from audiotask.tasks import SpeakerDiarization

        made = SpeakerDiarization(load_protocol(data["speakers"], SPEAKER_PROTOCOL), duration=1.0, batch_size=DIARIZATION_BATCH,
                                  max_speakers_per_chunk=2, num_workers=0, cache=cache)
        return made, CRNN(task=made, **SMALL_CRNN)
    from audiotask.tasks.audio_classification import AudioClassification

    yml, name = data["clips"].rsplit(":", 1)
    made = AudioClassification(load_protocol(yml, name), fold=2, duration=1.0, batch_size=2, num_workers=0,
                               cache=cache)
    return made, CRNN(task=made, **SMALL_CRNN)


def validate(root: Path, output: Path, devices: int) -> None:
    import lightning.pytorch as pl

    data = json.loads((root / "data.json").read_text())
    records = {}
    for task_name in TASKS:
        torch.manual_seed(0)
        task, model = build(task_name, data, root / "cache" / task_name)
        task.prepare_data()  # the one-process run prepares; the ranks of the other find it done
        model.setup("validate")  # builds the head: the weights exist, to be loaded
        weights = root / f"{task_name}.pt"
        if devices == 1:  # a few training steps, then the weights that both runs validate
            model.configure_optimizers = lambda: torch.optim.Adam(model.parameters(), lr=1e-2)
            pl.Trainer(accelerator="cpu", devices=1, max_steps=STEPS[task_name], limit_val_batches=0,
                       num_sanity_val_steps=0, logger=False, enable_progress_bar=False, enable_model_summary=False,
                       enable_checkpointing=False).fit(model)
            torch.save(model.state_dict(), weights)
        model.load_state_dict(torch.load(weights, weights_only=True))
        recorder = Recorder()
        trainer = pl.Trainer(
            accelerator="cpu", devices=devices, strategy="ddp" if devices > 1 else "auto", logger=False,
            enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False, callbacks=[recorder],
        )
        trainer.validate(model, verbose=False)
        records[task_name] = {
            "metrics": {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")},
            "seen": recorder.seen, "chunks": task.val__len__(), "world_size": trainer.world_size,
        }
        rank = trainer.global_rank
    output.mkdir(parents=True, exist_ok=True)
    (output / f"rank{rank}.json").write_text(json.dumps(records))


def Recorder():
    """Lightning callback (built lazily: Lightning is imported in the script only) that keeps
    which validation chunks its rank scored (the hash of each one's samples)."""
    from lightning.pytorch.callbacks import Callback

    class _Recorder(Callback):
        def __init__(self):
            self.seen = []

        def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
            self.seen.extend(hashlib.sha1(x.numpy().tobytes()).hexdigest()[:16] for x in batch["X"])

    return _Recorder()


if __name__ == "__main__":
    validate(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]))
