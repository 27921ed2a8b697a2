"""Choosing whether to guess from measured token times (engine/experts/guess_choice.py)."""

from engine.experts import guess_choice
from engine.experts.guess_choice import EPOCH_TOKENS, EXPLORE_EVERY, TRIAL_EPOCHS, GuessChoice


def _run(choice: GuessChoice, epochs: int, seconds: dict[bool, float]) -> list[bool]:
    """Feed `epochs` epochs of tokens that take `seconds[arm]`; the arm each epoch ran."""
    arms = []
    for _ in range(epochs):
        arms.append(choice.guessing)
        for _ in range(EPOCH_TOKENS):
            choice.token_done(seconds[choice.guessing])
    return arms


def test_both_arms_are_tried_in_turn_before_either_is_preferred():
    choice = GuessChoice()
    assert _run(choice, 2 * TRIAL_EPOCHS, {True: 0.3, False: 0.1}) == [True, False] * TRIAL_EPOCHS
    assert choice.speed(True) == 0.3 and choice.speed(False) == 0.1


def test_the_faster_arm_runs_and_the_slower_is_still_tried_now_and_then():
    for faster in (True, False):
        choice = GuessChoice()
        _run(choice, 2 * TRIAL_EPOCHS, {faster: 0.1, not faster: 0.12})
        arms = _run(choice, 4 * EXPLORE_EVERY, {faster: 0.1, not faster: 0.12})
        assert arms.count(not faster) == 4  # one epoch in EXPLORE_EVERY
        assert arms.count(faster) == 4 * (EXPLORE_EVERY - 1)


def test_a_change_in_which_arm_is_faster_is_followed():
    choice = GuessChoice()
    arms = _run(choice, 2 * TRIAL_EPOCHS + 2 * EXPLORE_EVERY, {True: 0.1, False: 0.2})  # guessing pays
    assert arms[-EXPLORE_EVERY:].count(True) == EXPLORE_EVERY - 1
    # The disk got faster: guesses now cost more than they hide. The unguessed arm's exploration
    # epochs replace its old times in its window; once most of them are new, it runs.
    arms = _run(choice, guess_choice.WINDOW * EXPLORE_EVERY + 2 * EXPLORE_EVERY, {True: 0.2, False: 0.1})
    assert choice.speed(False) < choice.speed(True)
    assert arms[-EXPLORE_EVERY:].count(False) == EXPLORE_EVERY - 1


def test_a_slow_outlier_epoch_does_not_flip_the_choice():
    choice = GuessChoice()
    _run(choice, 2 * TRIAL_EPOCHS, {True: 0.1, False: 0.12})
    # An exploration epoch, then one of guessing that a sweep, or another program, slowed.
    assert _run(choice, 2, {True: 5.0, False: 0.12}) == [False, True]
    assert _run(choice, EXPLORE_EVERY - 2, {True: 0.1, False: 0.12}) == [True] * (EXPLORE_EVERY - 2)
