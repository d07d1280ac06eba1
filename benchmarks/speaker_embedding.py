"""Speaker embeddings: equal error rate after a fixed number of steps, untrained and trained.

Trains ``SpeakerEmbedding`` with a small CRNN for a fixed number of optimiser steps, then
scores verification trials between chunks of held-out speakers: consecutive chunks
(``--trial-duration``) inside each stretch where one speaker talks alone (UEM applied),
every pair of them a trial (target: same speaker), scored by the cosine of their
embeddings. The untrained model's scores are printed beside, for scale.

When the development subset holds two speakers or more talking alone for a training chunk,
the model is validated every ``--validate-every`` steps and the weights with the lowest
validation EER are the ones scored; otherwise the final weights are. The output says which.

    .venv/bin/python benchmarks/speaker_embedding.py                   # real speech: debug-speech
    .venv/bin/python benchmarks/speaker_embedding.py --data generated  # synthetic voices, no data needed

``debug-speech`` (``Debug.SpeakerDiarization.Debug``, ten 30-second meeting excerpts for
training) has only a handful of training speakers who talk alone for a whole chunk: too few
to learn speaker identity from, and its test subset alone holds 11 one-second chunks, so
trials are drawn from the development and test chunks together (the development ones also
choose the checkpoint: not held out from that choice). ``generated`` is a deterministic
synthetic protocol (``audiotask.testing.speakers``): 16 training speakers, 8 development
(validation) and 8 test speakers, every pair of a subset's speakers in one conversation;
trials are between test chunks only. It is written once under ``benchmarks/.data/``.

The budget is steps (deterministic); the training time is printed beside.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import DEBUG_SPEECH, debug_speech_protocol, quick_mode, table  # noqa: E402

SMALL_CRNN = dict(channels=(16, 32, 64), n_mels=32, hidden_size=64)
#: the generated protocol: (train, development, test) speakers, and files of ``duration``
#: seconds; as many files as pairs of a subset's speakers (16 * 15 / 2, 8 * 7 / 2), since
#: ``make_speaker_protocol`` cycles through the pairs in order: fewer files would give the
#: first speakers most of the conversations and the last ones one or two
GENERATED = dict(speakers=(16, 8, 8), files=(120, 28, 28), duration=12.0, seed=0)
GENERATED_PROTOCOL = "SyntheticSpeakers.SpeakerDiarization.Speakers"
#: the subsets whose chunks make the trials
SCORED_SUBSETS = {"debug-speech": ("development", "test"), "generated": ("test",)}


def speaker_protocol(name: str, root: Path):
    """The protocol of ``name``: debug-speech's meetings, or the generated voices (written
    under ``root`` once: a folder named after its parameters, as they fix its content)."""
    if name == "debug-speech":
        protocol = debug_speech_protocol()
        if protocol is None:
            sys.exit(f"no debug-speech data at {DEBUG_SPEECH}: run with --data generated")
        return protocol
    from audiotask.testing.dummies import load_protocol
    from audiotask.testing.speakers import make_speaker_protocol

    folder = root / ("generated-" + "-".join(f"{key}{'x'.join(map(str, np.atleast_1d(value)))}"
                                             for key, value in GENERATED.items()))
    yml = folder / "database.yml"
    if not yml.is_file():  # database.yml is written last: its presence means a whole protocol
        make_speaker_protocol(folder, name=GENERATED_PROTOCOL.split(".")[0], **GENERATED)
    return load_protocol(yml, GENERATED_PROTOCOL)


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


def development_speakers(task) -> int:
    """Development speakers who talk alone for a whole training chunk: those validation sees."""
    return len(np.unique(task.speaker_regions("development").labels)) if task.has_validation else 0


def speakers_line(protocol, task, chunks, scored: tuple[str, ...], trial_duration: float) -> str:
    """Who trains, who validates and whose chunks make the trials."""
    annotated = {label for file in protocol.train() for label in file["annotation"].labels()}
    counts = Counter(speaker for _, _, names in chunks for speaker in names)
    return (f"speakers: train {len(annotated)} annotated, {len(task.speakers)} talking alone for {task.duration:g} s "
            f"or more (the loss's classes); development {development_speakers(task)} talking alone for "
            f"{task.duration:g} s (validation when 2 or more); {' + '.join(scored)} {len(counts)}, "
            f"in {trial_duration:g} s chunks: "
            + ", ".join(f"{name} {count}" for name, count in sorted(counts.items())) + " chunks")


def train(model, output: Path, steps: int, validate_every: int):
    """Fit ``model`` for ``steps`` steps under ``output`` and return ``(kept model, which
    weights, seconds)``: the best by the task's monitor when it has development speakers to
    tell apart, else the final ones."""
    from audiotask.core.model import Model
    from audiotask.training import checkpoint_step, fit

    task = model.task
    if task.has_validation and development_speakers(task) < 2:
        # validation would log a constant EER of 0.5 (no trial), and keep the first checkpoint
        task.has_validation = False
    # a fresh run: checkpoints of an earlier one must not linger beside this run's
    shutil.rmtree(output, ignore_errors=True)
    model.train()  # Lightning trains modules in the mode it finds them (evaluate() left eval)
    started = time.perf_counter()
    # validation every ``validate_every`` steps, whatever the epoch's length
    training = fit(model, output, max_steps=steps, check_val_every_n_epoch=None, val_check_interval=validate_every,
                   log_every_n_steps=min(10, validate_every), progress=False, enable_model_summary=False)
    seconds = time.perf_counter() - started
    if training.monitored is not None:
        which = (f"best {training.monitored} ({training.best_score:.3f}) at step "
                 f"{checkpoint_step(training.checkpoint)} of {training.steps}, validated every {validate_every}")
    else:
        which = f"final, step {training.steps} (fewer than 2 development speakers talk alone for {task.duration:g} s)"
    return Model.from_pretrained(training.model), which, seconds


def imported_resemblyzer(root: Path):
    """resemblyzer's encoder through ``audiotask import resemblyzer`` (None, said, when the
    package is not installed)."""
    import importlib.util

    if importlib.util.find_spec("resemblyzer") is None:
        print("  [skipped] resemblyzer row: the package is not installed (make install installs it)")
        return None
    from audiotask.core.model import Model
    from audiotask.pretrained.resemblyzer import import_resemblyzer

    folder = root / "resemblyzer"
    if not (folder / "audiotask.json").is_file():
        import_resemblyzer(folder)
    return Model.from_pretrained(folder)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", choices=tuple(SCORED_SUBSETS), default="debug-speech")
    parser.add_argument("--steps", type=int, default=300, help="optimiser steps (default: %(default)s)")
    parser.add_argument("--validate-every", type=int, default=50, help="steps (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=24)
    parser.add_argument("--speakers-per-batch", type=int, default=6)
    parser.add_argument("--duration", type=float, default=2.0, help="training chunks, in seconds")
    parser.add_argument("--trial-duration", type=float, default=1.0,
                        help="trial chunks, in seconds: shorter than training's, as debug-speech holds few long turns")
    parser.add_argument("--dimension", type=int, default=128)
    parser.add_argument("--root", type=Path, default=HERE / ".data" / "speaker-embedding",
                        help="generated data, caches and training runs (default: benchmarks/.data/, git-ignored)")
    parser.add_argument("--fine-tuning-lr", type=float, default=1e-4,
                        help="learning rate of the imported resemblyzer fine-tuned (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="30 steps, validated every 10")
    args = parser.parse_args(argv)
    quick = quick_mode(argv) or args.quick
    steps, validate_every = (30, 10) if quick else (args.steps, args.validate_every)
    import lightning.pytorch as pl
    import torch

    from audiotask.models import CRNN
    from audiotask.tasks.speaker_embedding import SpeakerEmbedding

    torch.set_num_threads(2)
    protocol = speaker_protocol(args.data, args.root)
    pl.seed_everything(0, workers=True, verbose=False)
    task = SpeakerEmbedding(protocol, duration=args.duration, batch_size=args.batch_size,
                            speakers_per_batch=args.speakers_per_batch, dimension=args.dimension, num_workers=0,
                            cache=args.root / "cache")
    model = CRNN(task=task, **SMALL_CRNN)
    model.learning_rate = 3e-3
    model.setup("fit")  # the speakers, and an untrained model to score first
    scored = SCORED_SUBSETS[args.data]
    chunks = trial_chunks(protocol, scored, args.trial_duration)
    print(speakers_line(protocol, task, chunks, scored, args.trial_duration))
    untrained = evaluate(model, chunks)

    kept, which, seconds = train(model, args.root / "runs" / f"{args.data}-{steps}", steps, validate_every)
    print(f"scored weights: {which}")
    trained = evaluate(kept, chunks)
    results = [("untrained", untrained), (f"trained, {steps} steps ({seconds:.0f} s)", trained)]
    pretrained = imported_resemblyzer(args.root)
    if pretrained is not None:  # what a user would pick instead: the GE2E encoder, imported
        results.append(("resemblyzer, imported (no training)", evaluate(pretrained, chunks)))
        # and fine-tuned by the same task for the same steps (train --from), at a tenth of the rate
        pretrained.task = SpeakerEmbedding(protocol, duration=args.duration, batch_size=args.batch_size,
                                           speakers_per_batch=args.speakers_per_batch, dimension=256, num_workers=0,
                                           cache=args.root / "cache")
        pretrained.learning_rate = args.fine_tuning_lr
        pretrained.setup("fit")  # the task's speakers, as for the CRNN above
        pl.seed_everything(0, workers=True, verbose=False)
        tuned, which, seconds = train(pretrained, args.root / "runs" / f"{args.data}-resemblyzer-{steps}", steps,
                                      validate_every)
        print(f"fine-tuned resemblyzer, scored weights: {which}")
        results.append((f"resemblyzer, fine-tuned {steps} steps at {args.fine_tuning_lr:g} ({seconds:.0f} s)",
                        evaluate(tuned, chunks)))
    rows = [[name, f"{100 * r['eer']:.1f}", f"{r['min_dcf']:.3f}", f"{r['min_dcf_05']:.3f}", r["trials"], r["targets"]]
            for name, r in results]
    table(["model", "EER (%)", "minDCF 0.01", "minDCF 0.05", "trials", "targets"], rows,
          title=f"{args.data} {' + '.join(scored)} chunks of {args.trial_duration:g} s, CRNN {SMALL_CRNN}, batch "
                f"{args.speakers_per_batch} speakers x {args.batch_size // args.speakers_per_batch} chunks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
