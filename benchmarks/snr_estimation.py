"""SNR estimation after a fixed training budget: the test-set mean absolute error in dB.

Trains a small CRNN for ``--steps`` optimiser steps on speech mixed on the fly with
generated coloured noises (``tasks.snr_estimation``; the checkpoint with the best
development MAE is kept), then scores fixed test mixtures: every consecutive test chunk
mixed, at each SNR of a grid, with noise recordings held out of training. Printed: the MAE
in dB over speech frames, per SNR and overall, beside that of a constant predictor (the
middle of the SNR range), for scale.

    .venv/bin/python benchmarks/snr_estimation.py                    # real speech: debug-speech
    .venv/bin/python benchmarks/snr_estimation.py --data generated   # speech-like tones, no data needed

The targets take the protocol's speech as clean. debug-speech's meetings are not: their own
background sits 7 to 48 dB below the speech depending on the file, so a model that hears it
reports a lower SNR than the target on the noisier files, most visibly at high target SNRs.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import DEBUG_SPEECH, debug_speech_protocol, table  # noqa: E402

CRNN_OPTIONS = dict(channels=(16, 32, 64), n_mels=32, hidden_size=64)
SNR_RANGE = (-5.0, 20.0)
TEST_SNRS = (-5.0, 0.0, 5.0, 10.0, 15.0, 20.0)
#: seeds the noise positions of the test mixtures: the same mixtures at every run
TEST_SEED = 2024


def speech_protocol(name: str, root: Path):
    """The protocol of clean speech: debug-speech's real meetings, or generated speech-like tones."""
    if name == "debug-speech":
        protocol = debug_speech_protocol()
        if protocol is None:
            sys.exit(f"no debug-speech data at {DEBUG_SPEECH}: run with --data generated")
        return protocol
    from audiotask.testing.dummies import load_protocol
    from audiotask.testing.mixtures import make_speech_protocol

    yml = make_speech_protocol(root / "generated", files_per_subset=(12, 2, 2), duration=30.0, segments_per_file=8)
    return load_protocol(yml, "Speechy.SpeakerDiarization.Speech")


def noise_folders(root: Path) -> tuple[Path, Path]:
    """Training and test noise folders: white, pink and brown noises, other recordings in each."""
    from audiotask.testing.mixtures import make_noise_folder

    return (make_noise_folder(root / "noise" / "train", files_per_colour=3, duration=10.0, seed=0),
            make_noise_folder(root / "noise" / "test", files_per_colour=2, duration=10.0, seed=1))


def make_task(protocol, noise: Path, args):
    from audiotask.tasks.snr_estimation import SNREstimation

    class WithTestSubset(SNREstimation):
        """Prepares the test subset too, whose clean chunks the evaluation mixes."""

        @property
        def subsets(self) -> list[str]:
            return [*super().subsets, "test"]

    return WithTestSubset(protocol, noise, snr_range=SNR_RANGE, duration=args.duration, batch_size=args.batch_size,
                          num_workers=0, cache=args.root / "cache")


def test_chunks(task) -> np.ndarray:
    """(chunks, 2) [file, start]: consecutive chunks over the annotated regions of the test files."""
    test = task.metadata.subsets["test"]
    rows = [(file, start + k * task.duration)
            for file in np.flatnonzero(task.usable_files("test")).tolist()
            for start, end in test.regions_of(file)
            for k in range(int((end - start) // task.duration))]
    return np.array(rows, dtype=np.float64).reshape(-1, 2)


def evaluate(model, task, noise: Path) -> dict[float, tuple[np.ndarray, np.ndarray]]:
    """{SNR: (model's absolute errors, constant predictor's)} in dB over the speech frames of the test mixtures."""
    import torch

    from audiotask.tasks.snr_estimation import MixingDraws, NoiseBank

    bank = NoiseBank.from_folder(noise, task.sample_rate)
    chunks = test_chunks(task)
    clean = task.make_batch("test", chunks[:, 0].astype(np.int64), chunks[:, 1], task.duration)
    rng = np.random.default_rng(TEST_SEED)
    constant = float(np.mean(SNR_RANGE))
    errors = {}
    model.eval()
    for index, snr in enumerate(TEST_SNRS):
        count = len(chunks)
        draws = MixingDraws(snr_db=np.full(count, snr), noise=(np.arange(count) + index) % len(bank),
                            position=rng.random(count), level_db=np.zeros(count))
        mixed = task.mix(clean, bank, draws)
        with torch.no_grad():
            predicted = torch.cat([model(mixed["X"][k : k + 16]) for k in range(0, count, 16)])[..., 0]
        speech = mixed["mask"].bool()
        target = mixed["y"][..., 0][speech]
        errors[snr] = ((predicted[speech] - target).abs().numpy(), (constant - target).abs().numpy())
    return errors


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", choices=("debug-speech", "generated"), default="debug-speech")
    parser.add_argument("--steps", type=int, default=300, help="optimiser steps (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--duration", type=float, default=5.0, help="chunk seconds (default: %(default)s)")
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--root", type=Path, default=HERE / ".data" / "snr-estimation", help="work folder (git-ignored)")
    parser.add_argument("--quick", action="store_true", help="60 steps (make bench --quick)")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps = 60
    import lightning.pytorch as pl
    import torch

    from audiotask.core.model import Model
    from audiotask.models import CRNN
    from audiotask.training import fit, set_learning_rate

    torch.set_num_threads(args.threads)
    pl.seed_everything(0, workers=True, verbose=False)
    training_noise, test_noise = noise_folders(args.root)
    task = make_task(speech_protocol(args.data, args.root), training_noise, args)
    model = CRNN(task=task, **CRNN_OPTIONS)
    set_learning_rate(model, args.learning_rate)
    started = time.perf_counter()
    training = fit(model, args.root / "runs" / f"{args.data}-{args.steps}", max_steps=args.steps,
                   check_val_every_n_epoch=5, log_every_n_steps=1, progress=False, enable_model_summary=False)
    seconds = time.perf_counter() - started
    kept = Model.from_pretrained(training.model)
    errors = evaluate(kept, task, test_noise)
    errors["all"] = tuple(np.concatenate([pair[k] for pair in errors.values()]) for k in (0, 1))
    rows = [[snr if snr == "all" else f"{snr:+.0f}", len(ours), f"{ours.mean():.2f}", f"{constant.mean():.2f}"]
            for snr, (ours, constant) in errors.items()]
    print(f"\n{args.data}: {training.summary()} of batch {args.batch_size} x {args.duration:g} s in {seconds:.0f} s "
          f"({args.threads} thread(s)); kept by {training.monitored} = {training.best_score}")
    table(["test SNR (dB)", "speech frames", "MAE (dB)", f"constant {np.mean(SNR_RANGE):g} dB: MAE"], rows,
          title=f"fixed test mixtures: {len(test_chunks(task))} test chunks x {len(TEST_SNRS)} SNRs, held-out noises")
    return 0


if __name__ == "__main__":
    sys.exit(main())
