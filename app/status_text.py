"""The window's status line in plain words, with the technical figures for a tooltip.

"31 tokens/s · memory 2.1 of 8 GiB · context 12%": what a person can act on (is it fast, is it
within the memory I allowed, how much of the conversation still fits); RSS, KV cache, prefill
rates and hit rates stay one hover away.
"""

from __future__ import annotations

from app.catalog import GIB
from engine.chunks import ChatStats
from engine.memory_report import MemoryReport

MB = 1e6


def speed_text(tokens_per_second: float) -> str:
    if tokens_per_second <= 0:
        return ""
    return f"{tokens_per_second:.1f} tokens/s" if tokens_per_second < 10 else f"{tokens_per_second:.0f} tokens/s"


def answer_details(stats: ChatStats) -> str:
    """The last answer's figures, for the speed's tooltip."""
    reused = f", {stats.reused_tokens:,} of them already in the cache" if stats.reused_tokens else ""
    return (
        f"Last answer: {stats.tokens_out:,} tokens at {stats.decode_tokens_per_second:.1f} tokens/s; "
        f"first token after {stats.ttft_seconds:.2f} s. The prompt: {stats.tokens_in:,} tokens{reused}, "
        f"{stats.prefill_tokens:,} read at {stats.prefill_tokens_per_second:,.0f} tokens/s."
    )


def context_text(used: int, length: int) -> tuple[str, str]:
    share = used / length if length else 0.0
    text = f"context {share:.0%}" if used else "context 0%"
    tip = (
        f"This conversation takes {used:,} of the model's {length:,} tokens of context. "
        "When it is full, the oldest messages are left out of the next answer."
    )
    return text, tip


def memory_text(report: MemoryReport) -> tuple[str, str]:
    """("memory 2.3 GB" or, with a budget, "memory 0.98 of 1.00 GiB", the technical tooltip)."""
    resident = report.model_resident_bytes
    if report.weights_budget_bytes is not None and resident is not None:
        text = f"memory {resident / GIB:.2f} of {report.weights_budget_bytes / GIB:.2f} GiB"
    else:
        text = f"memory {report.rss_bytes / GIB:.1f} GiB"
    parts = [f"The app uses {report.rss_bytes / MB:,.0f} MB of RAM (resident set)."]
    if resident is not None:
        where = "pages of the model file" if report.model_file_backed else "in memory"
        parts.append(f"Model weights: {resident / MB:,.0f} MB of {report.model_bytes / MB:,.0f} MB resident ({where}).")
    if report.weights_budget_bytes is not None:
        parts.append(f"Budget for the weights: {report.weights_budget_bytes / MB:,.0f} MB (Settings > Memory budget).")
    parts.append(f"KV cache (the conversation's memory): {report.kv_bytes / MB:,.0f} MB.")
    if report.expert_hit_rate is not None:
        parts.append(f"Experts found in memory when needed: {report.expert_hit_rate:.0%} (the rest read from disk).")
    return text, " ".join(parts)
