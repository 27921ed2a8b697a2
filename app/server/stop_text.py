"""Stop sequences over streamed text: what may be sent now, and whether to stop.

A stop sequence can arrive split over several tokens, so text that could still become one
is held back until it either completes (cut there, never sent) or cannot.
"""

from __future__ import annotations


class StopText:
    def __init__(self, stops: list[str]) -> None:
        self.stops = [s for s in stops if s]
        self._held = ""
        self.stopped = False

    def feed(self, text: str) -> str:
        """Add streamed text; return what can be sent. After a stop, nothing more is."""
        if self.stopped:
            return ""
        if not self.stops:
            return text
        pending = self._held + text
        cut = min((i for i in (pending.find(s) for s in self.stops) if i >= 0), default=-1)
        if cut >= 0:
            self.stopped = True
            self._held = ""
            return pending[:cut]
        keep = self._longest_partial(pending)
        self._held = pending[len(pending) - keep :] if keep else ""
        return pending[: len(pending) - keep]

    def flush(self) -> str:
        """The end of the answer: what was held back was no stop after all."""
        held, self._held = self._held, ""
        return "" if self.stopped else held

    def _longest_partial(self, text: str) -> int:
        """The longest end of `text` that begins some stop sequence."""
        best = 0
        for stop in self.stops:
            for n in range(min(len(stop) - 1, len(text)), best, -1):
                if text.endswith(stop[:n]):
                    best = n
                    break
        return best
