"""Check a protocol before training: what would fail or be dropped, file by file.

One pass over the protocol's subsets: missing, undecodable or empty audio files, NaN or
infinite samples (unless --no-scan), files shorter than a training chunk, annotations or
annotated regions (UEM) past the end of the audio, labels outside --classes, files the task
leaves out (no annotated region, with the uri the annotation and UEM files spell
differently; a label kind the task does not learn from). Exits with status 1 when a file
would make training fail, 0 otherwise.

example:
  audiotask check --database data/database.yml --protocol Debug.SpeakerDiarization.Debug --task vad
"""

from __future__ import annotations

import argparse

from audiotask.cli.train import load_protocol, task_options
from audiotask.tasks import registry

HELP = "check a protocol's files before training"
SUBSETS = ("train", "development", "test")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--database", action="append", default=[], metavar="YML",
                        help="pyannote.database configuration (repeatable; default: $PYANNOTE_DATABASE_CONFIG)")
    parser.add_argument("--protocol", required=True, help="protocol name, e.g. MyDatabase.SpeakerDiarization.MyProtocol")
    parser.add_argument("--task", choices=registry.names(), default="sed", metavar="TASK",
                        help="the task whose training is checked (default: %(default)s)")
    parser.add_argument("--classes", help="comma-separated class names (labels outside them are reported)")
    parser.add_argument("--duration", type=float, help="training chunk duration in seconds (default: the task's)")
    parser.add_argument("--subsets", default="train,development,test",
                        help="comma-separated subsets to check (default: %(default)s; absent ones are skipped)")
    parser.add_argument("--no-scan", dest="scan", action="store_false",
                        help="do not read every sample (skips the NaN / infinite check; much faster)")


def run(args: argparse.Namespace) -> int:
    from audiotask.cli.common import CommandError, quiet_warnings

    quiet_warnings()
    subsets = [name.strip() for name in args.subsets.split(",") if name.strip()]
    unknown = sorted(set(subsets) - set(SUBSETS))
    if unknown:
        raise CommandError(f"--subsets: unknown subset(s) {unknown}; choose among {list(SUBSETS)}")
    protocol = load_protocol(args.database, args.protocol)
    entry = registry.resolve(args.task)
    options = argparse.Namespace(batch_size=1, cache=None, duration=args.duration, num_workers=0,
                                 classes=args.classes, resolution=None)
    task = entry.load()(protocol, **task_options(options, entry))
    report = task.check(subsets, scan=args.scan)
    for finding in report.findings:
        print(finding)
    print(report.summary())
    return 1 if report.errors else 0
