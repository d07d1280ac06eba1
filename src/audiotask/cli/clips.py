"""Declare a folder of labelled clips as a pyannote.database protocol.

Clip corpora (ESC-50, UrbanSound8K, FSD50K, keyword sets) come as a folder of audio files
plus a table of labels: a CSV with a header naming the columns filename (or fname,
slice_file_name), label (or labels, category, class; a `labels` cell may hold several
comma-separated labels), and optionally fold and split (train, dev/val, test), other
columns ignored; or a DCASE weak-label TSV (filename<TAB>label1,label2). This writes
DATABASE_YML (and the uri lists beside it) declaring the protocol NAME.Protocol.Clips,
whose files' annotation is read from the table itself (audiotask registers a `.csv` loader
for pyannote.database). Train on it with `audiotask train --task classification` (one
label per clip) or `--task tagging`, and `--fold K` (or `--fold all`) when it has folds.

example:
  audiotask clips ESC-50/audio ESC-50/meta/esc50.csv --output data/esc50.yml --name ESC50
  audiotask train --database data/esc50.yml --protocol ESC50.Protocol.Clips \\
      --task classification --fold 1 --output run
"""

from __future__ import annotations

import argparse
from pathlib import Path

from audiotask.cli.common import CommandError

HELP = "declare a folder of labelled clips (CSV or weak TSV) as a protocol"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("audio", type=Path, help="folder of the clips (sub-folders included)")
    parser.add_argument("labels", type=Path, help="their labels: a CSV (filename,label[,fold][,split]) or a DCASE weak TSV")
    parser.add_argument("--output", type=Path, required=True, metavar="DATABASE_YML", help="database.yml to write")
    parser.add_argument("--name", default="Clips", help="database name, an identifier (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    from audiotask.engine.folds import fold_order
    from audiotask.protocols.clip_tables import read_clip_csv, write_clip_database

    for path, what in ((args.audio, "folder"), (args.labels, "file")):
        if not path.exists():
            raise CommandError(f"no such {what}: {path}")
    protocol = write_clip_database(args.audio, args.labels, args.output, name=args.name)
    print(f"database: {args.output}")
    print(f"protocol: {protocol}")
    if args.labels.suffix.lower() == ".csv":
        rows = read_clip_csv(args.labels).values()
        folds = sorted({row.fold for row in rows if row.fold}, key=fold_order)
        labels = {label for row in rows for label in row.labels}
        print(f"clips:    {len(rows)}, {len(labels)} labels" + (f", folds {', '.join(folds)}" if folds else ""))
    return 0
