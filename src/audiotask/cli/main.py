"""``audiotask`` command line: one subcommand per verb, each in its own module.

Only argparse is imported here and in the verb modules' top level: torch and Lightning
take seconds to import, and ``audiotask --help`` should answer at once. Each verb imports
what it needs inside its ``run(args)``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Optional, Sequence

from audiotask.cli.common import CommandError

#: subcommand -> module exposing ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``
VERBS = {
    "train": "audiotask.cli.train",
    "apply": "audiotask.cli.apply",
    "evaluate": "audiotask.cli.evaluate",
    "demo": "audiotask.cli.demo",
}


def build_parser() -> argparse.ArgumentParser:
    """The ``audiotask`` parser with its subcommands (imports no heavy module)."""
    from audiotask import __version__

    parser = argparse.ArgumentParser(
        prog="audiotask",
        description="Train, apply and evaluate audio deep-learning models organised around tasks.",
    )
    parser.add_argument("--version", action="version", version=f"audiotask {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in VERBS.items():
        module = importlib.import_module(module_name)
        subparser = subparsers.add_parser(
            name,
            help=module.HELP,
            description=module.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(subparser)
        subparser.set_defaults(run=module.run)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run ``audiotask`` with ``argv`` (default: the process's arguments); return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except CommandError as error:
        # a user's mistake (a missing file, a wrong option) deserves one line, not a traceback
        print(f"audiotask {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
