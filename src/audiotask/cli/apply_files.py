"""How ``audiotask apply`` goes through its files: in its own process, or shared among workers.

Either way each file becomes one :class:`Outcome` (its result, or the one line saying why it
failed), and the next files are decoded while the model runs (``inference.reading``). With
``--workers N``, N processes each load the model once and take the next file from a shared
queue whenever they are done with one, so that a long file does not hold up a fixed share;
their outcomes come back to apply's process, which writes every output itself.

Only light modules at the top level (see ``cli/main.py``).
"""

from __future__ import annotations

import argparse
import os
import pickle
import queue
import sys
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, NamedTuple, Optional

from audiotask.cli.apply_steps import FILE_ERRORS, file_problem, load_model


class Outcome(NamedTuple):
    """What became of the file at ``index`` of apply's list: its ``result`` (that of the
    outputs' ``process``) and ``seconds`` of audio, or the ``problem`` that stopped it."""

    index: int
    result: Any = None
    seconds: float = 0.0
    problem: Optional[str] = None


def process_files(outputs, files: Iterable[tuple[int, Path]]) -> Iterator[Outcome]:
    """The outcome of each ``(index, path)`` of ``files`` by ``outputs`` (an ``apply_outputs.Outputs``),
    in order, each file read ahead while the model runs on the one before.

    A file that raises one of ``apply_steps.FILE_ERRORS`` becomes an outcome with a problem; any
    other error is raised: it is no file's fault.
    """
    from audiotask.inference.reading import read_ahead

    for (index, path), audio in read_ahead(files, lambda item: outputs.read(item[1])):
        try:
            if isinstance(audio, Exception):
                raise audio
            result = outputs.process(path, audio)
        except FILE_ERRORS as error:
            yield Outcome(index, problem=file_problem(path, error))
            continue
        yield Outcome(index, result, audio.duration if audio is not None else outputs.seconds_read(path))


@dataclass(frozen=True)
class Setup:
    """What a worker process needs to build the outputs apply built (picklable).

    ``outputs`` is the ``apply_outputs.Outputs`` class of the model's kind; ``options`` the
    post-processing keywords, tuned values included; ``step`` in seconds (None: the default).
    """

    args: argparse.Namespace
    outputs: type
    options: dict
    step: Optional[float]
    device: str

    def build(self, model):
        """``outputs(args, Inference(model, ...), options)``; ValueError for a bad step or batch size."""
        from audiotask.inference.inference import Inference

        inference = Inference(model, step=self.step, batch_size=self.args.batch_size, device=self.device)
        return self.outputs(self.args, inference, self.options)


class WorkerTraceback(Exception):
    """Where a worker process raised the error it passed on (the ``__cause__`` of that error)."""

    def __str__(self) -> str:
        return f"\n\n{self.args[0]}"


@dataclass(frozen=True)
class _Crash:
    error: BaseException
    traceback: str


def available_cores() -> int:
    """CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


#: what the fork server imports once for every worker it forks
PRELOAD = ["audiotask.cli.apply_files", "audiotask.core.model", "audiotask.inference.inference"]


def worker_context():
    """How worker processes start: forked from a fork server that has imported the model's
    modules once (seconds of imports, which N spawned interpreters would each repeat, at
    once, on the same cores), or spawned where there is no fork server (Windows) or forking
    is unsafe (macOS, whose system libraries are not fork-safe).

    Never forked from apply's own process: forking a process that has run torch can hang.
    """
    import multiprocessing

    if sys.platform == "darwin" or "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    # heeded when the server starts (once per process): a later call finds it ready
    context.set_forkserver_preload(PRELOAD)
    return context


def _work(setup: Setup, threads: int, tasks, results) -> None:
    """A worker process: builds the outputs once, then processes ``(index, path)`` from
    ``tasks`` until None, putting each :class:`Outcome` (or a :class:`_Crash`) in ``results``."""
    import torch

    # N workers of cores / N threads each: more would only make them contend for the cores
    torch.set_num_threads(threads)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # apply's process said it already (a step moved to the frames)
            outputs = setup.build(load_model(setup.args.model))
        for outcome in process_files(outputs, iter(tasks.get, None)):
            results.put(outcome)
    except BaseException as error:  # passed on whole: the parent raises it as apply alone would
        try:
            pickle.dumps(error)
        except Exception:
            error = RuntimeError(f"{type(error).__name__}: {error}")
        results.put(_Crash(error, traceback.format_exc()))


def process_in_workers(setup: Setup, files: list[Path], workers: int) -> Iterator[Outcome]:
    """The outcome of each of ``files``, in the order ``workers`` processes finish them.

    A worker that dies (killed, out of memory) leaves its files failed with a problem saying
    so; an error no file caused is raised here, its worker's traceback as cause.
    """
    context = worker_context()
    tasks, results = context.Queue(), context.Queue()
    for item in enumerate(files):
        tasks.put(item)
    for _ in range(workers):
        tasks.put(None)
    threads = max(1, available_cores() // workers)
    processes = [context.Process(target=_work, args=(setup, threads, tasks, results), daemon=True,
                                 name=f"audiotask-apply-{rank}") for rank in range(workers)]
    for process in processes:
        process.start()
    pending = set(range(len(files)))
    try:
        while pending:
            try:
                message = results.get(timeout=1.0)
            except queue.Empty:
                if any(process.is_alive() for process in processes):
                    continue
                try:  # all gone: what they put last may still be on its way
                    message = results.get(timeout=1.0)
                except queue.Empty:
                    break
            if isinstance(message, _Crash):
                raise message.error from WorkerTraceback(message.traceback)
            pending.discard(message.index)
            yield message
        codes = sorted({process.exitcode for process in processes if process.exitcode})
        for index in sorted(pending):
            yield Outcome(index, problem=f"{files[index]}: its worker process died (exit code "
                          f"{', '.join(map(str, codes)) or 'unknown'}) before finishing it")
    finally:
        for process in processes:
            if pending and process.is_alive():
                process.terminate()
            process.join()
        tasks.cancel_join_thread()  # files no worker took need not reach one for this process to exit
        tasks.close()
        results.close()
