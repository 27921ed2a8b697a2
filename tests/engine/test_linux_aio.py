"""Linux AIO reads of the model file, on a real file and real memory."""

from __future__ import annotations

import ctypes
import os
import time

from engine.experts.linux_aio import AioContext
from engine.experts.page_control import PAGE


def test_a_reap_that_does_not_wait_looks_at_the_completion_ring_first(small_moe_model_path):
    """A reap that does not wait returns nothing while the read is in flight and the completion
    once the ring shows it (a ring check that never saw it would never return it)."""
    aio = AioContext(8)
    assert aio._ring is not None  # (Linux maps the ring at the context's id)
    buffer = ctypes.create_string_buffer(2 * PAGE)
    address = -(-ctypes.addressof(buffer) // PAGE) * PAGE  # O_DIRECT wants aligned memory
    fd = os.open(small_moe_model_path, os.O_RDONLY | os.O_DIRECT)
    try:
        assert aio.reap(0) == []  # nothing in flight
        assert aio.submit([(4, fd, address, PAGE, 0)]) == 1
        ring_showed, got = [], []
        for _ in range(5000):  # the read lands within a few milliseconds
            ring_showed.append(aio._ring[2] != aio._ring[3])
            got = aio.reap(0)
            if got:
                break
            time.sleep(0.001)
        assert got == [(4, PAGE)] and ring_showed[-1]  # taken once the ring showed it
        assert aio.reap(0) == [] and aio.in_flight == 0
        with open(small_moe_model_path, "rb") as f:
            assert ctypes.string_at(address, PAGE) == f.read(PAGE)
    finally:
        aio.close()
        os.close(fd)
