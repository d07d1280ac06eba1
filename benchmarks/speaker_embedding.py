"""Speaker embeddings on real speech: equal error rate after a fixed number of steps.

Trains ``SpeakerEmbedding`` with a small CRNN on the shared debug-speech data
(``Debug.SpeakerDiarization.Debug``: ten 30-second meeting excerpts for training) for a
fixed number of optimiser steps, then scores verification trials between chunks of the
development and test files: consecutive chunks (``--trial-duration``) inside each stretch
where one speaker talks alone (UEM applied), every pair of them a trial (target: same
speaker). The untrained model's scores are printed beside, for scale.

    .venv/bin/python benchmarks/speaker_embedding.py [--steps 200] [--quick]

The budget is steps (deterministic); the training time is printed beside.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import bench_dir, debug_speech_protocol, quick_mode, table  # noqa: E402

SMALL_CRNN = dict(channels=(16, 32, 64), n_mels=32, hidden_size=64)


def trial_chunks(protocol, subsets: tuple[str, ...], duration: float):
    """``[(file, [(start, end)...], [speaker...])]``: consecutive ``duration`` chunks inside
    the single-speaker stretches of each file of ``subsets``, cut to its annotated regions."""
    from audiotask.tasks.speaker_embedding import intersect_regions, single_speaker_regions

    files = []
    for subset in subsets:
        for file in getattr(protocol, subset)():
            annotation = file["annotation"]
            names = sorted(annotation.labels())
            turns = [(segment.start, segment.end, names.index(label))
                     for segment, _, label in annotation.itertracks(yield_label=True)]
            if not turns:
                continue
            starts, ends, labels = single_speaker_regions(*zip(*turns))
            limits = np.array([[segment.start, segment.end] for segment in file["annotated"].support()])
            pieces, index = intersect_regions(np.stack([starts, ends], axis=1), limits)
            segments, speakers = [], []
            for (start, end), label in zip(pieces.tolist(), labels[index].tolist()):
                for k in range(int((end - start) // duration)):
                    segments.append((start + k * duration, start + (k + 1) * duration))
                    speakers.append(names[label])
            if segments:
                files.append((file, segments, speakers))
    return files


def evaluate(model, chunks) -> dict:
    """EER and minDCF of every pair of chunks, scored by the cosine of their embeddings."""
    from audiotask.inference.embeddings import segment_embeddings
    from audiotask.metrics.verification import equal_error_rate, min_dcf

    embeddings = np.concatenate([segment_embeddings(model, file, segments) for file, segments, _ in chunks])
    speakers = np.array([speaker for _, _, names in chunks for speaker in names])
    first, second = np.triu_indices(len(speakers), k=1)
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    scores = np.einsum("td,td->t", unit[first], unit[second])
    is_target = speakers[first] == speakers[second]
    eer, _ = equal_error_rate(scores, is_target)
    return {"eer": eer, "min_dcf": min_dcf(scores, is_target, p_target=0.01),
            "min_dcf_05": min_dcf(scores, is_target, p_target=0.05), "trials": len(scores), "targets": int(is_target.sum())}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=200, help="optimiser steps (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=24)
    parser.add_argument("--speakers-per-batch", type=int, default=6)
    parser.add_argument("--duration", type=float, default=2.0, help="training chunks, in seconds")
    parser.add_argument("--trial-duration", type=float, default=1.0,
                        help="trial chunks, in seconds: shorter than training's, as the data holds few long turns")
    parser.add_argument("--dimension", type=int, default=128)
    parser.add_argument("--quick", action="store_true", help="30 steps")
    args = parser.parse_args(argv)
    steps = 30 if quick_mode(argv) or args.quick else args.steps
    import lightning.pytorch as pl
    import torch

    from audiotask.models import CRNN
    from audiotask.tasks.speaker_embedding import SpeakerEmbedding

    torch.set_num_threads(2)
    protocol = debug_speech_protocol()
    if protocol is None:
        return 0
    pl.seed_everything(0, verbose=False)
    task = SpeakerEmbedding(protocol, duration=args.duration, batch_size=args.batch_size,
                            speakers_per_batch=args.speakers_per_batch, dimension=args.dimension, num_workers=0,
                            cache=bench_dir() / "speaker-embedding-cache")
    model = CRNN(task=task, **SMALL_CRNN)
    model.learning_rate = 3e-3
    model.setup("fit")  # the speakers, and an untrained model to score first
    chunks = trial_chunks(protocol, ("development", "test"), args.trial_duration)
    counts = Counter(speaker for _, _, names in chunks for speaker in names)
    all_train = {label for file in protocol.train() for label in file["annotation"].labels()}
    print(f"speakers: train {len(all_train)} annotated, {len(task.speakers)} talking alone for {args.duration} s or more "
          f"(the loss's classes); development + test {len(counts)}, in {args.trial_duration} s chunks: "
          + ", ".join(f"{name} {count}" for name, count in sorted(counts.items())) + " chunks")
    untrained = evaluate(model.eval(), chunks)

    started = time.perf_counter()
    trainer = pl.Trainer(accelerator="cpu", max_steps=steps, limit_val_batches=0, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model)
    seconds = time.perf_counter() - started
    trained = evaluate(model.eval(), chunks)
    rows = [[name, f"{100 * r['eer']:.1f}", f"{r['min_dcf']:.3f}", f"{r['min_dcf_05']:.3f}", r["trials"], r["targets"]]
            for name, r in (("untrained", untrained), (f"trained, {steps} steps ({seconds:.0f} s)", trained))]
    table(["model", "EER (%)", "minDCF 0.01", "minDCF 0.05", "trials", "targets"], rows,
          title=f"debug-speech development + test chunks of {args.trial_duration} s, CRNN {SMALL_CRNN}, batch "
                f"{args.speakers_per_batch} speakers x {args.batch_size // args.speakers_per_batch} chunks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
