"""Distributed training on CPU: two ranks (gloo), a tiny task, a Debug model.

The test runs this file as a script (Lightning's "ddp" strategy starts the second rank by
running it again); each rank records what it saw in ``rank<k>.json``.
"""

import hashlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

#: epochs of the run: the second checks that each epoch draws afresh and as much
EPOCHS = 2


@pytest.mark.slow
@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without torch.distributed")
@pytest.mark.parametrize("resolution", ["chunk", "frame"])  # frame: mean teacher, and PSDS over the ranks' shares
def test_two_ranks_share_an_epoch_draw_different_chunks_and_agree_on_validation(tmp_path, resolution):
    from audiotask.testing.dummies import make_sound_event_protocol

    # the data exist before the ranks start: a rank writing them would change their mtimes
    yml = make_sound_event_protocol(tmp_path / "data", name="Distributed")
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, __file__, str(yml), str(tmp_path / "run"), resolution], env=env, capture_output=True, text=True, timeout=240,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    ranks = [json.loads((tmp_path / "run" / f"rank{rank}.json").read_text()) for rank in (0, 1)]

    # one epoch is one pass over the data across ranks: each rank trains half the batches
    for rank in ranks:
        assert rank["world_size"] == 2
        assert rank["num_training_batches"] == math.ceil(rank["batches_per_pass"] / 2)
        for epoch in range(EPOCHS):
            chunks = [chunk for e, batch in rank["batches"] if e == epoch for chunk in batch]
            assert len(chunks) == rank["num_training_batches"] * rank["batch_size"]
    # the samplers are keyed by rank: no chunk is drawn twice, within a rank or across them
    drawn = [[chunk for _, batch in rank["batches"] for chunk in batch] for rank in ranks]
    assert len(set(drawn[0])) == len(drawn[0]) and len(set(drawn[1])) == len(drawn[1])
    assert not set(drawn[0]) & set(drawn[1])
    # validation metrics are reduced over the ranks' shares of the development set
    expected = {"val/loss"} | ({"val/psds1", "val/psds1_teacher"} if resolution == "frame" else set())
    assert ranks[0]["validation"].keys() == ranks[1]["validation"].keys() >= expected
    for name, values in ranks[0]["validation"].items():
        assert values == pytest.approx(ranks[1]["validation"][name], rel=1e-6), name
    # rank 0 alone writes checkpoints
    assert ranks[0]["checkpoint_writes"] and not ranks[1]["checkpoint_writes"]
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()


def chunk_fingerprint(waveform) -> str:
    """Which chunk a (1, samples) waveform is: the hash of its samples."""
    return hashlib.sha1(waveform.numpy().tobytes()).hexdigest()[:16]


def train_two_ranks(yml: str, output: Path, resolution: str) -> None:
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import ModelCheckpoint

    from audiotask.models import Debug
    from audiotask.tasks import SoundEventDetection
    from audiotask.testing.dummies import load_protocol

    protocol = load_protocol(yml, "Distributed.SpeakerDiarization.Events")
    # the dummy files are all strongly labelled: the teacher is asked for, to run it across ranks
    teacher = dict(mean_teacher=True) if resolution == "frame" else {}
    task = SoundEventDetection(protocol, resolution=resolution, duration=1.0, batch_size=4, num_workers=1,
                               cache=output / "cache", **teacher)
    model = Debug(frame_hop=1600, task=task)
    trainer = pl.Trainer(
        accelerator="cpu", devices=2, strategy="ddp", max_epochs=EPOCHS, logger=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0,
        callbacks=[Recorder(output, task), ModelCheckpoint(dirpath=output / "checkpoints", save_last=True)],
    )
    trainer.fit(model)


class Recorder:
    """Lightning callback (built lazily: Lightning is imported in the script only) that
    writes what its rank trained on, validated and saved to ``output/rank<k>.json``."""

    def __new__(cls, output: Path, task):
        from lightning.pytorch.callbacks import Callback

        class _Recorder(Callback):
            def __init__(self):
                self.record = {"batches": [], "validation": {}, "checkpoint_writes": [], "batch_size": task.batch_size}

            def setup(self, trainer, pl_module, stage):
                io = trainer.strategy.checkpoint_io
                save = io.save_checkpoint

                def recorded_save(checkpoint, path, storage_options=None):
                    self.record["checkpoint_writes"].append(str(path))
                    return save(checkpoint, path, storage_options=storage_options)

                io.save_checkpoint = recorded_save

            def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
                self.record["batches"].append([trainer.current_epoch, [chunk_fingerprint(x) for x in batch["X"]]])

            def on_validation_end(self, trainer, pl_module):
                metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
                self.record["validation"] = metrics

            def teardown(self, trainer, pl_module, stage):
                self.record.update(
                    world_size=trainer.world_size, num_training_batches=trainer.num_training_batches,
                    batches_per_pass=task.train__len__() // task.batch_size,
                )
                output.mkdir(parents=True, exist_ok=True)
                (output / f"rank{trainer.global_rank}.json").write_text(json.dumps(self.record))

        return _Recorder()


if __name__ == "__main__":
    train_two_ranks(sys.argv[1], Path(sys.argv[2]), sys.argv[3])
