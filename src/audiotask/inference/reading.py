"""Reading files ahead of the model: the next files decode while the model runs on this one.

soundfile's decoding and soxr's resampling release the GIL, so one background thread keeps
a model that scores file after file from waiting on the disk and the decoder.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, TypeVar, Union

import torch

from audiotask.core.audio import Audio, check_samples

Item = TypeVar("Item")
Read = TypeVar("Read")

#: files decoded ahead of the one the model runs on: enough to hide one slow decode, while
#: holding only a few decoded files in memory
READ_AHEAD = 2


@dataclass(frozen=True)
class DecodedFile:
    """A whole file, decoded and resampled, as the model reads it.

    ``waveform`` is ``(1, samples)`` float32 at ``sample_rate``; ``duration`` (seconds) is
    the file's, from its header: a resampled waveform may be a fraction of a sample longer or
    shorter than the file, and the outputs end where the file ends.
    """

    path: Path
    waveform: torch.Tensor
    sample_rate: int
    duration: float

    @property
    def file(self) -> dict:
        """The in-memory file ``Inference`` and the embedding functions take (naming ``path``
        under "audio", for their messages)."""
        return {"waveform": self.waveform, "sample_rate": self.sample_rate, "audio": self.path}


def decode_file(path: Union[str, Path], sample_rate: int) -> DecodedFile:
    """Whole file ``path`` as the model of ``sample_rate`` reads it (mono, resampled).

    ``AudioError`` naming the file, with the messages of ``Inference`` reading the path
    itself, when it cannot be decoded, is empty, or holds a NaN or infinite sample.
    """
    path = Path(path)
    # an Audio of its own: decoders opened in this thread are never shared with the model's
    audio = Audio(sample_rate=sample_rate)
    try:
        num_frames, file_rate = audio.info(path)
        waveform, rate = audio(path)
    finally:
        audio.close()
    check_samples(waveform, str(path))
    return DecodedFile(path, waveform, rate, num_frames / file_rate)


def read_ahead(items: Iterable[Item], read: Callable[[Item], Read],
               depth: int = READ_AHEAD) -> Iterator[tuple[Item, Union[Read, Exception]]]:
    """``(item, read(item))`` for each of ``items``, in order, ``read`` running ahead in a thread.

    While the caller works on item ``k``, items ``k + 1`` to ``k + depth`` are read (one at a
    time, in one background thread). An ``Exception`` that ``read`` raises is yielded in
    place of its result, so that one bad file does not end the stream; the caller decides.
    ``items`` is iterated in the caller's thread, ``depth`` items ahead of what it consumed.
    """
    if depth < 1:
        raise ValueError(f"read_ahead: depth must be at least 1, got {depth}.")
    iterator = iter(items)
    pending: deque[tuple[Item, Future]] = deque()
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="read-ahead")

    def submit() -> None:
        for item in iterator:  # the next item, if any
            pending.append((item, pool.submit(read, item)))
            return

    try:
        for _ in range(depth):
            submit()
        while pending:
            item, future = pending.popleft()
            submit()  # before waiting: the thread reads on while the caller works
            error = future.exception()
            if error is not None and not isinstance(error, Exception):
                raise error  # KeyboardInterrupt, SystemExit: not a file's problem
            yield item, (error if error is not None else future.result())
    finally:
        # a caller that stops early does not wait for files it will never use
        pool.shutdown(wait=True, cancel_futures=True)
