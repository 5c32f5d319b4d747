"""When to stop a trial early: pure decisions on learning curves.

A pruner looks at the validation scores a trial has reached after each epoch so far and at the other
trials' curves (as far as they have trained), and either lets the trial go on or returns a
:class:`~kmnist_search.data.record.PruneRecord` (why it stopped). Nothing here trains, reads files or
imports Keras: the live search (:mod:`kmnist_search.search.tuners`) and the replay of recorded curves
(:mod:`kmnist_search.search.replay`) call the same objects, so a replayed decision is the decision a search makes.

The rules, and what they build on:

- :class:`PercentilePruner`: Optuna's ``PercentilePruner``/``MedianPruner`` and Vizier's median
  stopping rule (Golovin et al. 2017): stop a trial whose best score so far is below a percentile
  of the other trials' best scores at the same point of training. ``budget="epochs"`` compares at
  equal epochs (equal images seen); ``budget="steps"`` at equal optimizer steps, so that a trial
  with large batches (few steps per epoch) is not judged against trials that have taken many more
  steps.
- :class:`SuccessiveHalvingPruner`: asynchronous successive halving (ASHA, Li et al. 2020), as
  Optuna's ``SuccessiveHalvingPruner``: at rungs of ``min_epochs * reduction**k`` epochs, a trial
  continues only if it is in the top ``1/reduction`` of the trials that reached that rung.
- :class:`CatchUpPruner`: stop a trial that could not reach the best score so far even if it kept its
  recent pace to its last epoch. Learning curves flatten as they go (they are concave after their
  first epochs), so the pace of the last epochs, held to the end, bounds what a trial can still gain:
  an optimistic extrapolation of the learning curve (Domhan et al. 2015 extrapolate curves to stop
  trials that cannot beat the best so far; this bound is the simplest such extrapolation). With
  ``pace="slowing"`` the pace falls as 1/epoch after the last one measured, as it does on a curve that
  grows like the logarithm of the epochs (one of the parametric families Domhan et al. fit): a tighter,
  still curve-shaped bound. A trial with large batches starts slower but climbs faster, so it is judged
  by its own pace, not by where others stood at the same epoch. With ``peers``, a trial that its own pace
  may not judge yet (its first epoch, and the warm-up) is judged by other trials' curves, as Vizier's
  performance-curve stopping rule (Golovin et al. 2017) judges a trial by the curves of others: it could
  at most gain what a trial taking no more optimizer steps per epoch gained after as many epochs (one
  with larger batches learns slower per epoch and is not a bound for it).
- :class:`NoPruning`: every trial trains to the end.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from kmnist_search.data.record import PruneRecord
from kmnist_search.data.spaces import Pruning


@dataclass(frozen=True)
class Curve:
    """A trial's validation scores after each epoch trained so far (higher is better), and the optimizer
    steps one epoch takes (its training images divided by its batch size, rounded up)."""

    values: tuple[float, ...]
    steps_per_epoch: int = 1

    @property
    def epochs(self) -> int:
        return len(self.values)

    def prefix(self, epochs: int) -> Curve:
        """The curve as it stood after ``epochs`` epochs."""
        return Curve(self.values[:epochs], self.steps_per_epoch)

    def best(self, epochs: int | None = None) -> float:
        """The best finite score over the first ``epochs`` epochs (all by default); -inf if none."""
        finite = [v for v in self.values[:epochs] if math.isfinite(v)]
        return max(finite, default=float("-inf"))

    def best_within_steps(self, steps: int) -> float | None:
        """The best score over the epochs that ended within ``steps`` optimizer steps; None when the curve
        has not trained that far (its last epoch ended before ``steps``) or no epoch ended within them."""
        if self.epochs * self.steps_per_epoch < steps:
            return None
        within = steps // self.steps_per_epoch
        return self.best(within) if within else None


class Pruner:
    """Decides, after each epoch of a trial, whether it stops there."""

    name: ClassVar[str] = "none"

    def decide(self, own: Curve, others: Sequence[Curve]) -> PruneRecord | None:
        """A stop for the trial whose curve so far is ``own``, given the other trials' curves so far;
        None to let it train on."""
        raise NotImplementedError


@dataclass(frozen=True)
class NoPruning(Pruner):
    """Every trial trains all its epochs."""

    name: ClassVar[str] = "none"

    def decide(self, own: Curve, others: Sequence[Curve]) -> PruneRecord | None:
        return None


@dataclass(frozen=True)
class PercentilePruner(Pruner):
    """Stop a trial whose best score so far is below the ``percentile`` of the other trials' best scores
    at the same budget, after ``warmup_epochs`` and once at least ``min_trials`` others reached it."""

    name: ClassVar[str] = "percentile"
    percentile: float = 50.0
    warmup_epochs: int = 1
    min_trials: int = 3
    budget: str = "epochs"

    def decide(self, own: Curve, others: Sequence[Curve]) -> PruneRecord | None:
        if own.epochs <= self.warmup_epochs:
            return None
        compared = [value for value in self._others_best(own, others) if math.isfinite(value)]
        if len(compared) < self.min_trials:
            return None
        threshold = float(np.percentile(compared, self.percentile))
        value = own.best()
        if value < threshold:
            return PruneRecord(epoch=own.epochs, value=value, threshold=threshold, trials_compared=len(compared),
                               rule=self._rule())
        return None

    def _others_best(self, own: Curve, others: Sequence[Curve]) -> list[float]:
        if self.budget == "epochs":
            return [other.best(own.epochs) for other in others if other.epochs >= own.epochs]
        steps = own.epochs * own.steps_per_epoch
        found = (other.best_within_steps(steps) for other in others)
        return [value for value in found if value is not None]

    def _rule(self) -> str:
        share = "median" if self.percentile == 50 else f"{self.percentile:g}th percentile"
        return share + (" at equal steps" if self.budget == "steps" else "")


@dataclass(frozen=True)
class SuccessiveHalvingPruner(Pruner):
    """ASHA as a pruner: at rung epochs ``min_epochs * reduction**k``, stop a trial that is not in the top
    ``1/reduction`` of the trials (itself included) that reached the rung."""

    name: ClassVar[str] = "asha"
    min_epochs: int = 1
    reduction: int = 3

    def is_rung(self, epoch: int) -> bool:
        ratio = epoch / self.min_epochs
        power = round(math.log(ratio, self.reduction)) if ratio >= 1 else -1
        return power >= 0 and self.min_epochs * self.reduction ** power == epoch

    def decide(self, own: Curve, others: Sequence[Curve]) -> PruneRecord | None:
        if not self.is_rung(own.epochs):
            return None
        value = own.best()
        rung = sorted((other.best(own.epochs) for other in others if other.epochs >= own.epochs), reverse=True)
        kept = max(1, (len(rung) + 1) // self.reduction)  # of the trials at the rung, this one included
        if sum(1 for other in rung if other > value) < kept:
            return None
        return PruneRecord(epoch=own.epochs, value=value, threshold=rung[kept - 1], trials_compared=len(rung),
                           rule=f"top-1/{self.reduction} cut")


@dataclass(frozen=True)
class CatchUpPruner(Pruner):
    """After ``warmup_epochs``, stop a trial whose best score so far, raised by its pace (the mean gain of
    its best score over the last ``PACE_EPOCHS`` epochs) for each epoch it has left of ``epochs`` (``held``),
    or by that pace falling as 1/epoch (``slowing``), would still be below the best score any other trial
    has reached. With ``peers``, before that (from its first epoch), stop it if its best score raised by the
    most another trial with no more steps per epoch gained after as many epochs would still be below."""

    name: ClassVar[str] = "catch-up"
    PACE_EPOCHS: ClassVar[int] = 2
    epochs: int
    warmup_epochs: int = 1
    pace: str = "held"
    peers: bool = False

    def reach(self, own: Curve) -> float:
        """The best score the trial could end with if its recent pace went on to its last epoch."""
        window = min(self.PACE_EPOCHS, own.epochs - 1)
        pace = (own.best() - own.best(own.epochs - window)) / window
        if self.pace == "slowing":  # the gain of epoch k is pace * t / k after the t epochs trained
            return own.best() + pace * sum(own.epochs / k for k in range(own.epochs + 1, self.epochs + 1))
        return own.best() + pace * (self.epochs - own.epochs)

    def peer_reach(self, own: Curve, others: Sequence[Curve]) -> float | None:
        """The best score the trial could end with if it gained as much after its epochs so far as the most
        any other trial with no more optimizer steps per epoch gained after as many epochs; None if no such
        trial has trained further."""
        trained = own.epochs
        gains = [other.best() - other.best(trained) for other in others
                 if other.epochs > trained and other.steps_per_epoch <= own.steps_per_epoch
                 and math.isfinite(other.best(trained))]
        return own.best() + max(gains) if gains else None

    def decide(self, own: Curve, others: Sequence[Curve]) -> PruneRecord | None:
        if own.epochs >= self.epochs:
            return None
        if own.epochs > max(self.warmup_epochs, 1):
            reach: float | None = self.reach(own)
            reach_by = "its recent pace, slowing as 1/epoch" if self.pace == "slowing" else None
        elif self.peers:
            reach = self.peer_reach(own, others)
            reach_by = f"the largest gain after epoch {own.epochs} of a trial with as few steps per epoch"
        else:
            return None
        scores = [score for score in (other.best() for other in others) if math.isfinite(score)]
        if reach is None or not scores or not math.isfinite(own.best()):
            return None
        best = max(scores)
        if reach < best:
            return PruneRecord(epoch=own.epochs, value=own.best(), threshold=best, trials_compared=len(scores),
                               rule="best score so far", reach=reach, reach_by=reach_by)
        return None


def make_pruner(pruning: Pruning, epochs: int) -> Pruner:
    """The pruner a space's ``[pruning]`` settings (or the command line's, checked there) ask for, for
    trials of ``epochs`` epochs."""
    if pruning.strategy == "none":
        return NoPruning()
    if pruning.strategy == "catch-up":
        return CatchUpPruner(epochs, pruning.warmup_epochs, pruning.pace, pruning.peers)
    if pruning.strategy == "asha":
        return SuccessiveHalvingPruner(pruning.min_epochs, pruning.reduction)
    return PercentilePruner(float(pruning.percentile), pruning.warmup_epochs, pruning.min_trials, pruning.budget)
