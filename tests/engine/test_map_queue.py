"""The direct reads' system calls made in order by map_queue.c's thread, on real memory and a real file."""

from __future__ import annotations

import ctypes
import os

import pytest

from engine.engine import Engine
from engine.experts import map_queue, slots
from engine.experts.io import ReadMethod
from engine.experts.linux_aio import AioContext
from engine.experts.page_control import PAGE, residency
from engine.experts.slots import MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, ExpertSlots
from tests.engine.test_experts import GREEDY, QUESTION, _budget_config, _reference_answer

PAGES = 16


@pytest.fixture
def queue():
    aio = AioContext(64)
    calls = map_queue.open_calls(aio)
    assert isinstance(calls, map_queue.QueuedCalls)  # (built by `pip install`: setup.py)
    yield calls, aio
    calls.drain()
    aio.in_flight -= len(calls.take_failed())
    calls.close()
    aio.close()


@pytest.fixture
def places():
    """Two empty page-aligned places of PAGES pages each, as llama.cpp's mapping holds experts."""
    size = 2 * PAGES * PAGE
    address = slots._libc.mmap(None, size, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
    yield address, address + PAGES * PAGE
    slots._libc.munmap(address, size)


@pytest.fixture
def model_fd(small_moe_model_path):
    fd = os.open(small_moe_model_path, os.O_RDONLY | os.O_DIRECT)
    yield fd, small_moe_model_path
    os.close(fd)


def _reap(calls, aio, n: int) -> list[tuple[int, int]]:
    results = []
    while len(results) < n:
        results += calls.take_failed() or aio.reap(1, timeout_s=0.01)
    return sorted(results)


def test_a_slot_is_mapped_read_into_moved_and_freed_in_the_order_queued(queue, places, model_fd):
    calls, aio = queue
    first, second = places
    fd, path = model_fd
    nbytes, offset = PAGES * PAGE, 3 * PAGE
    with open(path, "rb") as f:
        f.seek(offset)
        expected = f.read(nbytes)
    held = ExpertSlots(4, nbytes, spare_limit=0, calls=calls)
    slot = held.place(first, nbytes)  # queued: a slot of RAM mapped at the first place,
    calls.read(7, fd, first, nbytes, offset)  # the file's bytes read into it,
    calls.flush()
    assert _reap(calls, aio, 1) == [(7, nbytes)]
    assert ctypes.string_at(first, nbytes) == expected
    assert calls.new_cpu_s() > 0  # the thread's CPU, for the reads' statistics

    calls.move(first, second, nbytes)  # its pages moved to the second place, the first emptied
    held.release(slot, keep=False)  # and, queued after that, the slot's RAM given back
    calls.drain()
    assert ctypes.string_at(second, nbytes) == b"\0" * nbytes  # (the memfd's pages were punched out)
    assert not residency(first, first + nbytes).any() and ctypes.string_at(first, nbytes) == b"\0" * nbytes
    calls.check()  # no call failed


def test_a_read_the_kernel_refuses_is_reported_not_waited_for(queue, places):
    calls, aio = queue
    first, _ = places
    calls.read(3, 987654, first, PAGE, 0)  # no such file descriptor
    calls.flush()
    assert _reap(calls, aio, 1) == [(3, -9)]  # EBADF
    aio.in_flight -= 1


def test_a_failed_mapping_call_stops_the_queue_and_is_raised(queue, places, model_fd):
    calls, aio = queue
    first, _ = places
    fd, _ = model_fd
    calls.map_empty(first + 1, PAGE)  # not page-aligned: EINVAL
    calls.read(5, fd, first, PAGE, 0)  # queued after it: never made
    calls.drain()
    with pytest.raises(OSError, match="mapping empty memory"):
        calls.check()
    assert calls.take_failed() == [(5, -125)]  # ECANCELED
    aio.in_flight -= 1


def test_without_the_compiled_queue_the_calls_are_made_on_the_spot(places):
    aio = AioContext(8)
    calls = map_queue.open_calls(aio, queued=False)
    assert isinstance(calls, map_queue.ImmediateCalls)
    first, _ = places
    calls.map_empty(first, PAGE)  # made now: nothing to drain
    with pytest.raises(OSError):
        calls.map_empty(first + 1, PAGE)
    aio.close()


def test_a_queue_that_fails_in_the_middle_of_an_answer_costs_the_answer_nothing(small_moe_model_path, monkeypatch):
    """The hook raises the failed call, and the manager puts the file back under the experts."""
    reference = _reference_answer(small_moe_model_path)
    moves = []
    original = map_queue.QueuedCalls.move

    def failing_once_well_into_the_answer(self, old, new, nbytes):
        moves.append(new)
        return original(self, old, new + (1 if len(moves) == 20 else 0), nbytes)  # unaligned: EINVAL

    monkeypatch.setattr(map_queue.QueuedCalls, "move", failing_once_well_into_the_answer)
    config, _ = _budget_config(small_moe_model_path, 0.3, expert_read_method=ReadMethod.DIRECT)
    with Engine(small_moe_model_path, config) as engine:
        assert engine.experts.read_method is ReadMethod.DIRECT
        assert engine.chat(QUESTION, GREEDY).text == reference
        assert len(moves) >= 20
        assert engine.experts.read_method is ReadMethod.WILLNEED  # it fell back


def test_a_read_the_kernel_refuses_during_an_answer_is_made_the_slow_way(small_moe_model_path, monkeypatch):
    reference = _reference_answer(small_moe_model_path)
    reads = []
    original = map_queue.QueuedCalls.read

    def refused_once(self, job, fd, address, nbytes, offset):
        reads.append(job)
        original(self, job, 987654 if len(reads) == 30 else fd, address, nbytes, offset)  # EBADF

    monkeypatch.setattr(map_queue.QueuedCalls, "read", refused_once)
    config, _ = _budget_config(small_moe_model_path, 0.3, expert_read_method=ReadMethod.DIRECT)
    with Engine(small_moe_model_path, config) as engine:
        assert engine.chat(QUESTION, GREEDY).text == reference
        assert len(reads) >= 30
        assert engine.experts.read_method is ReadMethod.DIRECT and engine.experts._io.failures == 1
