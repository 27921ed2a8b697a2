"""Stop sequences over streamed text, split across tokens as a model streams them."""

from __future__ import annotations

import pytest

from app.server.stop_text import StopText


def _stream(pieces, stops):
    matcher = StopText(stops)
    sent = [matcher.feed(p) for p in pieces]
    return "".join(sent) + matcher.flush(), matcher.stopped


@pytest.mark.parametrize(
    ("pieces", "stops", "expected"),
    [
        (["Hello", " wor", "ld"], [], ("Hello world", False)),
        (["Hello", " wor", "ld"], ["wor"], ("Hello ", True)),
        (["Hel", "lo END", " more"], ["END"], ("Hello ", True)),
        (["a", "b", "c", "d"], ["bc"], ("a", True)),  # the stop split over two tokens
        (["ab", "x"], ["abc"], ("abx", False)),  # a partial match that did not complete is sent
        (["say ", "E", "N"], ["END"], ("say EN", False)),  # held back to the end, then sent
        (["one\n\n", "two"], ["\n\n", "two"], ("one", True)),
        (["xxEN", "D"], ["END", "xEND"], ("x", True)),  # the earliest stop wins
    ],
)
def test_stop_sequences(pieces, stops, expected):
    assert _stream(pieces, stops) == expected


def test_text_that_may_begin_a_stop_is_held_back_until_it_cannot():
    matcher = StopText(["</answer>"])
    assert matcher.feed("fine </an") == "fine "
    assert matcher.feed("chor") == "</anchor"
