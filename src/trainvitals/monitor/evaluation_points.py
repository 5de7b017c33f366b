"""`EvaluationPoints`: the `Monitor`'s two evaluation calls, `evaluate()` after a
validation anywhere in the loop and `end_epoch()` at an epoch end, and the train-loss
tallies they compare (the mean of the applied steps since the previous one)."""
from __future__ import annotations

import math
from typing import Any

import torch

from trainvitals import distributed as dist
from trainvitals.events import Event
from trainvitals.monitor.inputs import loss_value

__all__ = ["EvaluationPoints"]


class EvaluationPoints:
    """Mixed into `Monitor`, which holds the state these read and write."""

    def evaluate(self, val_loss: Any = None, train_loss: Any = None, *, epoch: float | None = None) -> list[Event]:
        """After a validation made anywhere in the loop (every N steps, mid-epoch): log
        `val_loss` and run the post-epoch checks with the mean loss of the applied steps
        since the previous evaluation (or `train_loss`). `epoch`, the host's epoch (HF's
        fractional one), names the evaluation; default: the epochs ended so far (none
        named before `end_epoch()` is first called). Losses
        may be floats, 0-dim tensors or NumPy scalars. A second evaluation at the step of
        one that had a val loss (the same weights: HF's `evaluate()` after `train()`) is
        not recorded again."""
        if epoch is None:  # the epochs ended so far, if the loop has epochs
            epoch = self.epoch if self.epoch else math.nan
        return self._evaluation(val_loss, train_loss, epoch)

    def end_epoch(self, val_loss: Any = None, train_loss: Any = None) -> list[Event]:
        """An epoch ended, after its validation if any: log its train loss (`train_loss`,
        default: the mean loss of its applied steps; NaN if every step was skipped or an
        applied one was non-finite) and evaluate with `val_loss`, naming the evaluation
        after the epoch. Without a val loss, the checks of the train loss alone run here,
        unless the run validates by `evaluate()` (then an epoch end is no evaluation)."""
        val, given = loss_value("val_loss", val_loss), loss_value("train_loss", train_loss)
        start = len(self.events)
        self.flush()
        epoch_loss = self.epoch_loss() if given is None else given
        self.log("train/epoch_loss", epoch_loss, self.step)
        if val is not None or not self._validated:
            # the epoch's name where evaluations are epoch ends, else the host's epoch beside the number
            name = None if self._evaluations == self.epoch else self.epoch
            self._evaluation(val, given, name)
        self.epoch += 1
        self._epoch_loss = [0.0, 0]
        self.sinks.flush()
        return self.events[start:]

    def _evaluation(self, val_loss: Any, train_loss: Any, host_epoch: float | None) -> list[Event]:
        val, train = loss_value("val_loss", val_loss), loss_value("train_loss", train_loss)
        self.flush()
        start = len(self.events)
        again = self._last_eval is not None and self._last_eval[0] == self.step
        if again and self._last_eval[1]:
            return []  # same step, same weights: this evaluation was made
        if val is not None and dist.active():  # each rank's validation loss: their mean
            val = float(dist.all_reduce_sum(torch.tensor(val, dtype=torch.float64,
                                                         device=dist.collective_device())) / dist.world_size())
        if again:  # a val loss for the evaluation made at this step without one: it is revised
            index, train = self._evaluations - 1, self._last_eval[2] if train is None else train
        else:
            index, train = self._evaluations, self._mean(self._eval_loss) if train is None else train
            self._evaluations += 1
        if val is not None:
            self.log("val/loss", val, self.step)
            self._validated = True
        if self.evaluation is not None:
            final = self.total_steps is not None and self.step >= self.total_steps
            self.evaluation.report(self, index, self.step, train, val, self.current_lr(), self.run_info,
                                   self._before_nonfinite, host_epoch=host_epoch, final=final)
        self._last_eval = [self.step, val is not None, train]
        self._eval_loss, self._before_nonfinite = [0.0, 0], None
        self.sinks.flush()
        return self.events[start:]

    def epoch_loss(self) -> float:
        """Mean loss of this epoch's applied steps reported so far (NaN if none)."""
        return self._mean(self._epoch_loss)

    @staticmethod
    def _mean(acc: list) -> float:
        total, count = acc
        return total / count if count else math.nan
