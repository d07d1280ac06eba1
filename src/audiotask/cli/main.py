"""``audiotask`` command line: one subcommand per verb, each in its own module.

Only argparse is imported here and in the verb modules' top level: torch and Lightning
take seconds to import, and ``audiotask --help`` should answer at once. Each verb imports
what it needs inside its ``run(args)``.
"""

from __future__ import annotations

import argparse
import errno
import functools
import importlib
import re
import sys
import traceback
import warnings
from typing import Optional, Sequence

from audiotask.cli.common import (
    CommandError,
    exit_status,
    one_line,
    signals_stop_the_command,
    stop_message,
    stopped_by_signal,
)

#: subcommand -> module exposing ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``
VERBS = {
    "train": "audiotask.cli.train",
    "apply": "audiotask.cli.apply",
    "export": "audiotask.cli.export",
    "import": "audiotask.cli.import_model",
    "evaluate": "audiotask.cli.evaluate",
    "tune": "audiotask.cli.tune",
    "demo": "audiotask.cli.demo",
    "check": "audiotask.cli.check",
    "clips": "audiotask.cli.clips",
}


def build_parser() -> argparse.ArgumentParser:
    """The ``audiotask`` parser with its subcommands (imports no heavy module)."""
    from audiotask import __version__

    parser = argparse.ArgumentParser(
        prog="audiotask",
        description="Train, apply and evaluate audio deep-learning models organised around tasks.",
    )
    parser.add_argument("--version", action="version", version=f"audiotask {__version__}")
    parser.add_argument("--debug", action="store_true", help="on an error, show its traceback, not one line")
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
        # also after the verb; SUPPRESS: absent here, it leaves the value given before the verb
        subparser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                               help="on an error, show its traceback, not one line")
        subparser.set_defaults(run=module.run)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run ``audiotask`` with ``argv`` (default: the process's arguments); return the exit status.

    0: done; 1: done, but some inputs failed (the command listed them); 2: a user's error,
    said in one line (``--debug`` shows the traceback instead); 130 / 143: stopped by Ctrl-C
    (SIGINT) / SIGTERM, after keeping what it could (``train`` its ``interrupted.ckpt``,
    ``apply`` the outputs of the files it finished), said in one line with how to go on.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    prefix = f"audiotask {args.command}"
    with warnings.catch_warnings(), signals_stop_the_command():
        if not args.debug:
            warnings.showwarning = functools.partial(_show_warning_in_one_line, prefix)
        try:
            return int(args.run(args) or 0)
        except BaseException as error:  # said in one line below, or raised again
            status = report(error, args, prefix)
            if status is None:
                raise
            return status


def report(error: BaseException, args: argparse.Namespace, prefix: str) -> Optional[int]:
    """Say ``error`` in one line on stderr and return the exit status, or None for an error to
    raise again (a programming error, a user's error with ``--debug``, a library's ``sys.exit``)."""
    if stopped_by_signal(error):
        if args.debug:
            traceback.print_exc()
        # a scheduler must not read a stopped run as done: 128 + the signal's number
        print(f"{prefix}: {stop_message(error)}", file=sys.stderr)
        return exit_status()
    if isinstance(error, CommandError):
        # a user's mistake (a missing file, a wrong option) deserves one line, not a traceback
        print(f"{prefix}: error: {error}", file=sys.stderr)
        return 2
    if isinstance(error, USER_ERRORS) and not args.debug:
        print(f"{prefix}: error: {error_message(error, args)}", file=sys.stderr)
        return 2
    return None


#: what the library raises for bad input (a missing or malformed file, a wrong option); as
#: programming errors (TypeError, AttributeError) are not here, they keep their traceback
#: (Ctrl-C and SIGTERM have their own line, see ``main``). OSError covers FileNotFoundError,
#: ValueError covers AudioError, json.JSONDecodeError and UnicodeDecodeError; RuntimeError is
#: what torch raises for a checkpoint that does not fit the model (or is no checkpoint).
USER_ERRORS = (ValueError, OSError, KeyError, RuntimeError)


#: errors of a write on a full disk (or quota), a folder without write permission, a read-only file system
FULL_OR_READ_ONLY = (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS)


def error_message(error: BaseException, args: argparse.Namespace) -> str:
    """``error`` as one line: the original error of a dataloader worker, a state-dict
    mismatch summarised (and explained from a resumed checkpoint's manifest)."""
    text = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
    if "Original Traceback (most recent call last):" in text:
        # a dataloader worker's error carries the worker's traceback: keep its last entry
        lines = text.splitlines()
        last = max(i for i, line in enumerate(lines) if line and not line[0].isspace())
        text = "\n".join(lines[last:]).removeprefix(f"{type(error).__name__}: ")
    elif isinstance(error, KeyError):  # str(KeyError("x")) is "'x'": say what it is
        text = f"missing key {text!r}"
    if isinstance(error, OSError) and error.errno is not None:
        text = re.sub(r"^\[Errno \d+\] ", "", text)  # the reason says it in words
        if error.errno in FULL_OR_READ_ONLY and not error.filename:
            # a write that failed without naming its file (a full disk): say where this command writes
            output = getattr(args, "output", None)
            text = f"{text} (while writing under {output})" if output is not None else text
    if isinstance(error, RuntimeError) and "Error(s) in loading state_dict" in text:
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        text = " ".join(lines[:2]) + (f" (and {len(lines) - 2} more)" if len(lines) > 2 else "")
        if getattr(args, "resume", None) is not None and getattr(args, "model", None) is not None:
            from audiotask.cli.common import resume_mismatch

            text = resume_mismatch(args) or text
    return one_line(text)


def _show_warning_in_one_line(prefix, message, category, filename, lineno, file=None, line=None) -> None:
    """``warnings.showwarning`` for the command line: ``audiotask VERB: warning: MESSAGE``."""
    print(f"{prefix}: warning: {one_line(message)}", file=sys.stderr if file is None else file)


if __name__ == "__main__":
    sys.exit(main())
