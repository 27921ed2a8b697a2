"""The documented recommendation for machines of 1 to 64 GiB."""

from __future__ import annotations

import pytest

from app.catalog import GIB, ModelCatalog
from app.hardware import HardwareProbe, probe_hardware
from app.model_choice import RunMode, recommend


def probe(ram_gib: float, free_disk_gib: float = 500) -> HardwareProbe:
    return HardwareProbe(
        total_ram_bytes=int(ram_gib * GIB),
        available_ram_bytes=int(ram_gib * GIB * 0.7),
        free_disk_bytes=int(free_disk_gib * GIB),
        physical_cores=4,
        logical_cores=8,
        cpu_features=frozenset({"avx2"}),
        machine="x86_64",
    )


# RAM GiB -> (model, mode, fits): the table in the README
TABLE = {
    1: ("4b", RunMode.MEMORY_BUDGET, False),
    2: ("4b", RunMode.MEMORY_BUDGET, True),
    4: ("4b", RunMode.IN_MEMORY, True),
    8: ("4b", RunMode.IN_MEMORY, True),
    16: ("4b", RunMode.IN_MEMORY, True),
    32: ("21b", RunMode.IN_MEMORY, True),
    64: ("21b", RunMode.IN_MEMORY, True),
}


@pytest.mark.parametrize("ram_gib", sorted(TABLE))
def test_recommendation_table(ram_gib):
    choice = recommend(probe(ram_gib), ModelCatalog.load())
    assert (choice.model_id, choice.mode, choice.fits) == TABLE[ram_gib]
    assert f"{ram_gib:.1f} GiB of RAM" in choice.reason
    if choice.mode is RunMode.MEMORY_BUDGET and choice.fits:
        assert choice.budget_bytes >= 1 * GIB and "memory-budget" in choice.reason


def test_low_disk_space_is_mentioned():
    choice = recommend(probe(8, free_disk_gib=1), ModelCatalog.load())
    assert "Free disk space is 1.0 GiB" in choice.reason


def test_the_probe_reads_this_machine(tmp_path):
    found = probe_hardware(tmp_path / "not" / "yet" / "created")
    assert found.total_ram_bytes >= found.available_ram_bytes > 0
    assert found.free_disk_bytes > 0
    assert found.logical_cores >= found.physical_cores >= 1
    assert found.cpu_features <= {"avx2", "avx512", "neon"}


def test_the_catalog_never_picks_the_powerinfer_file():
    entry = ModelCatalog.load().get("21b")
    files = [
        "SmallThinker-21B.Q4_0.powerinfer.gguf",
        "README.md",
        "SmallThinker-21B.Q8_0.gguf",
        "SmallThinker-4B-A0.6B-Instruct.Q4_0.gguf",  # another model's file in the same folder
        "smallthinker-21b-a3b-instruct.q4_0.gguf",
    ]
    assert entry.pick_file(files) == "smallthinker-21b-a3b-instruct.q4_0.gguf"
    assert entry.pick_file(files[:4]) is None


def test_budget_summary_says_what_fits():
    from app.model_choice import budget_summary

    catalog = ModelCatalog.load()
    assert budget_summary(None, catalog).startswith("Automatic")
    assert budget_summary(1 * GIB, catalog) == (
        "1.0 GiB for the model's weights and its KV cache: SmallThinker 4B runs in memory-budget mode (slower); "
        "SmallThinker 21B needs at least 8 GiB."
    )
    assert "SmallThinker 4B runs in memory; SmallThinker 21B runs in memory-budget mode" in budget_summary(
        8 * GIB, catalog
    )
    assert budget_summary(16 * GIB, catalog).endswith("SmallThinker 21B runs in memory.")


def test_the_budget_note_says_when_the_platform_cannot_keep_a_budget(monkeypatch):
    from app.model_choice import budget_platform_note
    from engine.experts import page_control

    monkeypatch.setattr(page_control, "SUPPORTED", True)
    assert budget_platform_note() == ""
    monkeypatch.setattr(page_control, "SUPPORTED", False)
    assert "not enforced" in budget_platform_note() and "Linux" in budget_platform_note()
