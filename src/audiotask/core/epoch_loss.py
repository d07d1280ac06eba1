"""The epoch mean of the training loss, kept where a resumed run can take it back.

Lightning's own ``on_epoch=True`` mean lives in its logger connector, which checkpoints do
not hold: a run resumed mid-epoch logged the mean of the batches after the resume only. This
one is saved in every training checkpoint (``audiotask_epoch_loss``), so that a resumed run's
``train/loss_epoch`` rows equal the uninterrupted run's, bit for bit.
"""

from __future__ import annotations

from typing import Optional

import torch

#: key of the running mean in a training checkpoint
CHECKPOINT_KEY = "audiotask_epoch_loss"


class EpochLoss:
    """Batch-size-weighted mean of the losses of an epoch's optimiser steps.

    A loss is *pending* from its training step until the optimiser step that applies it
    (:meth:`count`): a checkpoint saved at a step's end then holds exactly the steps done.
    """

    def __init__(self) -> None:
        self.epoch = -1
        #: sum of loss x batch size: a float64 tensor on the losses' device while counting (no
        #: device-to-host copy per step), a float once restored
        self.total: float | torch.Tensor = 0.0
        self.weight = 0  #: sum of batch sizes
        self._pending: list[tuple[torch.Tensor, int]] = []

    def add(self, loss: torch.Tensor, batch_size: int) -> None:
        """A finite loss of ``batch_size`` examples, counted at the next optimiser step."""
        self._pending.append((loss.detach(), int(batch_size)))

    def count(self, epoch: int) -> None:
        """The optimiser step of epoch ``epoch`` applied the pending losses: add them."""
        if epoch != self.epoch:
            self.epoch, self.total, self.weight = int(epoch), 0.0, 0
        for loss, batch_size in self._pending:
            self.total = self.total + loss.double() * batch_size
            self.weight += batch_size
        self._pending.clear()

    def mean(self, epoch: int) -> Optional[float]:
        """The mean over the counted steps of epoch ``epoch``, None when there is none."""
        return float(self.total) / self.weight if epoch == self.epoch and self.weight else None

    def state(self) -> list:
        return [self.epoch, float(self.total), self.weight]

    def restore(self, state: Optional[list]) -> None:
        self._pending.clear()
        if state is not None:
            self.epoch, self.total, self.weight = int(state[0]), float(state[1]), int(state[2])
