"""Whether guessing the next layer's experts pays on this machine, decided while decoding.

Guessing (reading a later layer's likely experts while this layer computes, see
`ExpertManager._read_ahead`) trades CPU on the computing thread (the guesses' router rows,
their cache admissions, their reads' submission) for shorter waits on the disk. Which side
wins depends on the disk's speed against the compute, and neither is known in advance nor
constant: on one AMD EPYC (2 cores) the 21B at 8 GiB decoded 0.70-1.03x as fast with guesses
while the disk read 2.2-2.5 GB/s, and faster with them an hour earlier at about 1.1 GB/s;
the 4B at 1 GiB gained 0.91-1.11x. So the manager measures both: decode tokens run in
epochs of `EPOCH_TOKENS`, each epoch guessing or not; the two arms alternate until each has
`TRIAL_EPOCHS`, then the faster one runs, and every `EXPLORE_EVERY`-th epoch still runs the
other, so that a disk that slows down (or a context that grows) is noticed. An arm's speed is
the median of its latest `WINDOW` epochs' mean time per token (robust to an epoch that a
sweep or another program slowed).

A token's time here is from its layer 0's routing to its last layer's: every layer whose
experts a guess can change, without the sampling or the pause before the next token (a
reply's first token may come minutes after the last one's).
"""

from __future__ import annotations

import collections
import statistics

EPOCH_TOKENS = 4
TRIAL_EPOCHS = 4  # per arm before the faster one is preferred
EXPLORE_EVERY = 8  # then one epoch in this many runs the slower arm
WINDOW = 8  # epochs per arm that its speed is judged on


class GuessChoice:
    """Chooses, per epoch of decode tokens, whether to guess; fed each token's time."""

    def __init__(self) -> None:
        self.guessing = True  # the arm of the current epoch
        self._epoch_times: list[float] = []
        self._epochs = 0
        self._recent = {True: collections.deque(maxlen=WINDOW), False: collections.deque(maxlen=WINDOW)}

    def token_done(self, seconds: float) -> None:
        """One decode token of the current arm took `seconds` (layer 0 to the last layer)."""
        self._epoch_times.append(seconds)
        if len(self._epoch_times) < EPOCH_TOKENS:
            return
        self._recent[self.guessing].append(sum(self._epoch_times) / len(self._epoch_times))
        self._epoch_times.clear()
        self._epochs += 1
        self.guessing = self._next_arm()

    def _next_arm(self) -> bool:
        tried = {arm: len(epochs) for arm, epochs in self._recent.items()}
        if min(tried.values()) < TRIAL_EPOCHS:
            return not self.guessing  # alternate while trying both
        faster = self.speed(True) <= self.speed(False)  # (seconds per token: lower is faster)
        return (not faster) if self._epochs % EXPLORE_EVERY == 0 else faster

    def speed(self, guessing: bool) -> float:
        """Seconds per token of an arm: the median of its latest epochs (inf before any)."""
        epochs = self._recent[guessing]
        return statistics.median(epochs) if epochs else float("inf")
