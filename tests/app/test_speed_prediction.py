"""The speed prediction: footprints, traces, the replay, the time model and the recommendation."""

from __future__ import annotations

import numpy as np
import pytest

from app.catalog import GIB, ModelCatalog
from app.hardware import HardwareProbe
from app.model_choice import RunMode, recommend
from app.speed.measurements import ComputeSpeed, MachineSpeed, load_machine_speed, measure_disk, save_machine_speed
from app.speed.memory_plan import budget_speed, catalog_id_for, memory_plan
from app.speed.predict import predict, predict_weights
from app.speed.profiles import PRIOR_LABEL, model_profile, shape_footprint
from app.speed.trace import sample_trace
from engine.experts.footprint import ExpertFootprint
from engine.experts.history import history_file, save_history
from engine.experts.manager import fixed_bytes
from engine.model_info import inspect_model
from engine.synthetic import get_shape, plan_tensors
from engine.synthetic.router_prior import skewed_router_shares


def test_a_footprint_from_the_published_shape_equals_the_one_of_a_file_of_that_shape(small_moe_model_path):
    info = inspect_model(small_moe_model_path)
    shape = get_shape("small-moe")
    planned = ExpertFootprint.from_tensors(
        ((p.name, p.nbytes) for p in plan_tensors(shape)), shape.n_layer, shape.n_expert, shape.n_expert_used
    )
    assert planned == ExpertFootprint.of_model(info)
    assert planned.fixed_bytes == fixed_bytes(info)  # what the manager keeps resident
    four_b = shape_footprint("4b")
    assert four_b.expert_bytes == 1_990_656  # shared/MODEL_FACTS.md
    assert shape_footprint("21b").expert_bytes == 3_317_760


def test_a_sampled_trace_uses_k_experts_per_layer_in_proportion_to_their_shares():
    shares = skewed_router_shares(n_layer=3, n_expert=16, n_expert_used=4)
    assert np.allclose(shares.sum(axis=1), 1) and shares[0, 0] > 1.4 * shares[0, -1]  # hot ones first
    trace = sample_trace(shares, 4, n_tokens=3000, seed=1)
    assert len(trace) == 3 * 3000
    for layer, access in enumerate(trace[:3]):
        assert len(np.unique(access)) == 4 and (access // 16 == layer).all()
    counts = np.bincount(np.concatenate(trace[::3]), minlength=16) / (3000 * 4)
    np.testing.assert_allclose(counts, shares[0], atol=0.01)


def machine(disk_gbps: float = 2.0, four_b_tps: float = 20.0, read_cpu: float = 0.3) -> MachineSpeed:
    footprint = shape_footprint("4b")
    compute = {"4b": ComputeSpeed(footprint.active_bytes_per_token, in_memory_tps=four_b_tps)}
    return MachineSpeed(disk_gbps=disk_gbps, read_cpu_s_per_gb=read_cpu, disk_measured_at=43200.0, compute=compute)


def test_speed_rises_with_the_budget_until_the_model_runs_in_memory():
    profile = model_profile(ModelCatalog.load().get("4b"))
    assert profile.usage_source == PRIOR_LABEL
    fast = machine()
    below = predict_weights(profile, fast, profile.footprint.minimum_budget - 1)
    assert not below.runs
    at = [predict(profile, fast, int(gib * GIB)) for gib in (1.5, 2, 2.5, 4)]
    speeds = [p.tokens_per_s for p in at]
    assert speeds == sorted(speeds) and at[-1].in_memory and speeds[-1] == pytest.approx(20.0)
    assert at[0].hit_rate < at[1].hit_rate < 1 and 0 < at[0].experts_resident < at[1].experts_resident
    slow = predict(profile, machine(disk_gbps=0.1), int(1.5 * GIB))
    assert slow.hit_rate == at[0].hit_rate and slow.tokens_per_s < at[0].tokens_per_s / 2


def test_a_model_never_run_here_is_scaled_from_one_that_was():
    catalog = ModelCatalog.load()
    large = model_profile(catalog.get("21b"))
    measured = machine(four_b_tps=20.0)
    assert measured.compute_source("21b") == "scaled from another model measured here"
    seconds = measured.compute_s_per_token("21b", large.footprint, in_memory=True)
    ratio = large.footprint.active_bytes_per_token / shape_footprint("4b").active_bytes_per_token
    assert 3 < ratio < 4.5 and seconds == pytest.approx(ratio / 20.0)


def test_the_usage_history_recorded_here_replaces_the_prior(tmp_path, small_moe_model_path):
    info = inspect_model(small_moe_model_path)
    entry = ModelCatalog.load().get("4b")
    assert model_profile(entry, info, tmp_path).usage_source == PRIOR_LABEL  # none yet
    usage = np.zeros((info.n_layer, info.n_expert))
    usage[:, :4] = 200  # every token used the first four experts of each layer
    save_history(history_file(tmp_path, info), None, usage, info.n_expert_used)
    profile = model_profile(entry, info, tmp_path)
    assert profile.usage_source.startswith("your usage history (200 tokens")
    # Room for exactly those four per layer: nearly every use is found in memory.
    budget = profile.footprint.fixed_bytes + 4 * info.n_layer * profile.footprint.expert_bytes
    budget = int(budget * 1.02) + (8 << 20)
    assert predict_weights(profile, machine(), budget).hit_rate > 0.95
    assert predict_weights(model_profile(entry, info), machine(), budget).hit_rate < 0.8  # the prior spreads use


def test_the_figures_are_kept_and_a_damaged_file_means_typical_ones(tmp_path, caplog):
    path = tmp_path / "machine-speed.json"
    assert load_machine_speed(path).disk_measured_at is None
    save_machine_speed(path, machine())
    assert load_machine_speed(path) == machine()
    path.write_text("{not json", encoding="utf-8")
    assert load_machine_speed(path) == MachineSpeed() and "ignoring the machine speed" in caplog.text
    assert "not measured here yet" in MachineSpeed().disk_source


def test_the_disk_probe_reads_a_scratch_file_and_removes_it(tmp_path):
    reads = measure_disk(tmp_path)
    assert reads.gbps > 0 and reads.cpu_s_per_gb >= 0 and reads.bytes_read > 100 << 20
    assert list(tmp_path.iterdir()) == []


def probe(ram_gib: float) -> HardwareProbe:
    return HardwareProbe(int(ram_gib * GIB), int(ram_gib * GIB * 0.7), 500 * GIB, 4, 8, frozenset({"avx2"}), "x86_64")


@pytest.mark.parametrize(("disk_gbps", "read_cpu", "offered"), [(10.0, 0.05, True), (0.2, 0.3, False)])
def test_the_21b_is_offered_in_memory_budget_mode_where_the_measured_disk_is_fast_enough(disk_gbps, read_cpu, offered):
    catalog = ModelCatalog.load()
    profiles = [model_profile(e) for e in catalog.entries]
    ram = probe(11)  # 8.25 GiB usable: the 21B's 8 GiB target, not enough to hold it
    plan = memory_plan(profiles, machine(disk_gbps, four_b_tps=60.0, read_cpu=read_cpu), ram.total_ram_bytes)
    choice = recommend(ram, catalog, budget_speed(plan, min_tps=5.0))
    assert (choice.model_id == "21b") is offered
    assert f"your disk reads {disk_gbps:.1f} GB/s (measured 1 Jan): SmallThinker 21B runs at about" in choice.reason
    if offered:
        assert choice.mode is RunMode.MEMORY_BUDGET and choice.budget_bytes == int(8.25 * GIB)
    else:
        assert choice.model_id == "4b" and "below the 5 tokens/s set as usable" in choice.reason
    assert recommend(ram, catalog).model_id == "4b"  # without a prediction the 21B is offered only in memory


def test_a_file_is_recognised_by_its_shape(small_moe_model_path):
    assert catalog_id_for(inspect_model(small_moe_model_path)) is None
