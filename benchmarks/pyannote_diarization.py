"""pyannote.audio's own SpeakerDiarization task against ``audiotask train --task diarization``.

Both train for the same number of steps on the debug-speech protocol
(``Debug.SpeakerDiarization.Debug``: 10 train files, 2 development files of 30 s), on CPU,
one after the other, validating every epoch; the script prints and saves (JSON) the wall
time of each training and its local diarization error rate on the development chunks at
every validation, and the best.

- pyannote.audio 4.0.7: ``pyannote.audio.tasks.SpeakerDiarization`` (powerset, 5 s chunks,
  at most 3 speakers per chunk and 2 per frame, batch 16) and ``PyanNet`` from random
  weights, Adam at 3e-3, nothing downloaded; its metric is the task's ``DiarizationErrorRate``
  (pyannote.audio.torchmetrics, threshold 0.5) over the development chunks.
- audiotask: its CLI (``--audiotask``, run as a subprocess, so that this script imports
  nothing of audiotask and runs in the second environment), CRNN, ``val/der``.

pyannote.audio needs torchaudio and torchcodec, which audiotask's environment lacks, so it
runs in a second environment. The commands used (pip from the machine's registry;
about 5.3 GB, mostly CUDA libraries, 1.5 min):

    python3 -m venv /work/exp/pyannote/venv
    /work/exp/pyannote/venv/bin/pip install torch==2.11.0 torchaudio==2.11.1 pyannote.audio==4.0.7
    # torchaudio 2.11.1 does not load with torch 2.11.0 (libtorchaudio.so: undefined symbol
    # torch_exception_get_what_without_backtrace) nor with torch 2.13.0+cpu (_torchaudio.so
    # needs libc10_cuda.so): use the torchaudio of torch's own release
    /work/exp/pyannote/venv/bin/pip install torch==2.11.0 torchaudio==2.11.0 soundfile

torchcodec (0.17.0) then imports but cannot decode (no FFmpeg libraries on the machine), so
the audio is read with soundfile and handed to pyannote as in-memory waveforms
(``{"waveform": (channel, time) tensor, "sample_rate": int}``, see ``get_file`` below).

Run (about 10 minutes on 2 cores):

    OMP_NUM_THREADS=2 /work/exp/pyannote/venv/bin/python benchmarks/pyannote_diarization.py \\
        /work/exp/pyannote/results.json
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "2")

import argparse
import csv
import json
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import soundfile
import torch
from lightning.pytorch import Callback, Trainer, seed_everything
from pyannote.audio.models.segmentation import PyanNet
from pyannote.audio.tasks import SpeakerDiarization
from pyannote.database import FileFinder, registry

#: ../shared/data/debug-speech, beside the repository
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "debug-speech"
PROTOCOL = "Debug.SpeakerDiarization.Debug"
DURATION, SPEAKERS_PER_CHUNK, SPEAKERS_PER_FRAME, BATCH, LR = 5.0, 3, 2, 16, 3e-3


class InMemorySpeakerDiarization(SpeakerDiarization):
    """pyannote's task, reading each file from memory instead of through torchcodec."""

    waveforms = {}

    def get_file(self, file_id):
        path = str(self.prepared_data["audio-path"][file_id])
        if path not in self.waveforms:
            data, sample_rate = soundfile.read(path, dtype="float32", always_2d=True)
            # 16 samples of zeros at the end, never read: pyannote's in-memory crop refuses a
            # chunk that ends exactly at the end of the file (`end_sample >= num_samples`)
            waveform = torch.from_numpy(np.pad(data.T, ((0, 0), (0, 16))))
            self.waveforms[path] = (waveform, sample_rate)
        waveform, sample_rate = self.waveforms[path]
        return {"audio": path, "waveform": waveform, "sample_rate": sample_rate}


class PyanNetAdam(PyanNet):
    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=LR)


class Validations(Callback):
    """Record the task's validation DER (and the step it was reached at) at every validation."""

    def __init__(self):
        self.rows, self.start = [], time.perf_counter()

    def on_validation_epoch_end(self, trainer, model):
        if not trainer.sanity_checking:
            metrics = trainer.callback_metrics
            self.rows.append({"step": trainer.global_step, "der": float(metrics["DiarizationErrorRate"]),
                              "loss": float(metrics["loss/val"])})
            print(f"pyannote step {self.rows[-1]['step']:4d} dev local DER {self.rows[-1]['der']:.4f} "
                  f"({time.perf_counter() - self.start:.0f} s)", flush=True)


def train_pyannote(steps: int, seed: int) -> dict:
    seed_everything(seed)
    registry.load_database(str(DATA / "database.yml"))
    protocol = registry.get_protocol(PROTOCOL, preprocessors={"audio": FileFinder()})
    task = InMemorySpeakerDiarization(
        protocol, duration=DURATION, max_speakers_per_chunk=SPEAKERS_PER_CHUNK,
        max_speakers_per_frame=SPEAKERS_PER_FRAME, batch_size=BATCH, num_workers=0)
    model = PyanNetAdam(task=task)
    validations = Validations()
    trainer = Trainer(accelerator="cpu", devices=1, max_steps=steps, max_epochs=-1, check_val_every_n_epoch=1,
                      num_sanity_val_steps=0, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, callbacks=[validations])
    start = time.perf_counter()
    trainer.fit(model)
    seconds = time.perf_counter() - start
    return {"system": "pyannote.audio 4.0.7 PyanNet", "steps": trainer.global_step, "seconds": seconds,
            "parameters": sum(p.numel() for p in model.parameters()),
            "validation_chunks": int(len(task.prepared_data["validation"])), "validations": validations.rows}


def train_audiotask(audiotask: str, steps: int, seed: int, work: Path) -> dict:
    output, cache = work / "audiotask-run", work / "audiotask-cache"
    for folder in (output, cache):  # a fresh run: audio decoded into the cache counts too
        shutil.rmtree(folder, ignore_errors=True)
    command = [audiotask, "train", "--task", "diarization", "--database", str(DATA / "database.yml"),
               "--protocol", PROTOCOL, "--model", "CRNN", "--model-option", "channels=[16,32,64]",
               "--model-option", "n_mels=32", "--model-option", "hidden_size=64",
               "--batch-size", str(BATCH), "--learning-rate", str(LR), "--max-steps", str(steps),
               "--duration", str(DURATION), "--max-speakers-per-chunk", str(SPEAKERS_PER_CHUNK),
               "--max-speakers-per-frame", str(SPEAKERS_PER_FRAME), "--num-workers", "0",
               "--seed", str(seed), "--accelerator", "cpu", "--no-progress",
               "--cache", str(cache), "--output", str(output)]
    start = time.perf_counter()
    print("audiotask training...", flush=True)
    run = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if run.returncode:
        raise SystemExit(f"audiotask failed ({run.returncode}):\n{run.stderr[-3000:]}")
    with open(output / "metrics.csv", newline="") as table:
        # metrics.csv's step is Lightning's, one less than the optimiser steps done
        rows = [{"step": int(row["step"]) + 1, "der": float(row["val/der"]), "loss": float(row["val/loss"])}
                for row in csv.DictReader(table) if row.get("val/der")]
    return {"system": "audiotask CRNN", "steps": steps, "seconds": seconds, "validations": rows,
            "log": [line for line in (run.stdout + run.stderr).splitlines() if line.startswith(("speed", "kept"))]}


def save(path: Path, results: list) -> None:
    for result in results:
        result["best"] = min(result["validations"], key=lambda row: row["der"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"omp_num_threads": os.environ["OMP_NUM_THREADS"], "torch": torch.__version__,
                                "results": results}, indent=1))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("output", type=Path, help="JSON file for the results")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--audiotask", default=str(Path(__file__).resolve().parents[1] / ".venv" / "bin" / "audiotask"),
                        help="audiotask's CLI (default: the repository's .venv)")
    parser.add_argument("--work", type=Path, default=Path("/work/exp/pyannote"),
                        help="scratch folder for audiotask's run and cache (replaced)")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

    # audiotask first (the shorter run), each result saved as soon as it is in
    results = []
    for train in (lambda: train_audiotask(args.audiotask, args.steps, args.seed, args.work),
                  lambda: train_pyannote(args.steps, args.seed)):
        results.append(train())
        save(args.output, results)
    print(f"{'system':32} {'steps':>6} {'train s':>8} {'best dev local DER':>19} {'at step':>8} {'validations':>12}")
    for result in results:
        best = result["best"]
        print(f"{result['system']:32} {result['steps']:6d} {result['seconds']:8.1f} {best['der']:19.4f} "
              f"{best['step']:8d} {len(result['validations']):12d}")


if __name__ == "__main__":
    main()
