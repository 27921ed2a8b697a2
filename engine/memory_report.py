"""Where the process's memory is: cheap enough to poll twice a second.

Model bytes resident are counted with mincore over llama.cpp's own mapping of the
file (found in /proc/self/maps), so they are the pages really in RAM, not a guess.
On systems without /proc the figures that need it are None.
"""

from __future__ import annotations

from dataclasses import dataclass

import psutil


@dataclass(frozen=True)
class MemoryReport:
    rss_bytes: int
    rss_anon_bytes: int | None
    rss_file_bytes: int | None
    model_bytes: int  # the model's tensors
    model_resident_bytes: int | None  # of those, in RAM now
    model_file_backed: bool  # True: weights are pages of the mapped file, evictable
    kv_bytes: int
    kv_global_bytes: int
    kv_window_bytes: int
    weights_budget_bytes: int | None = None  # kept by the expert manager, when it runs
    expert_hit_rate: float | None = None


def process_rss() -> tuple[int, int | None, int | None]:
    """(rss, anonymous part, file-backed part); the parts need Linux's /proc."""
    rss = psutil.Process().memory_info().rss
    fields = {}
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(("RssAnon:", "RssFile:", "RssShmem:")):
                    key, value = line.split(":")
                    fields[key] = int(value.split()[0]) * 1024
    except OSError:
        return rss, None, None
    return rss, fields.get("RssAnon"), fields.get("RssFile", 0) + fields.get("RssShmem", 0)
