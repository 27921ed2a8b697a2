"""This machine's figures for the speed prediction, measured once and kept in a small JSON file.

- The disk: expert-sized random reads, cold, as the engine makes them
  (engine/experts/read_probe.py): GB/s and machine CPU seconds per GB. A few seconds, on a
  background thread, again when the user asks.
- Compute, per model: decode tokens/s with every weight resident, in memory (repacked, the
  fast kernels) and within a budget that holds every expert (experts on the mapped file,
  the expert manager at work). They come from the answers the app decodes in memory or
  from a probe (bench/predict.py); a model
  never run here is scaled from another one by the weight bytes a token reads, which is
  what decode time follows on a CPU.

Until something is measured, typical figures stand in, and `disk_source` /
`compute_source` say so.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from engine.experts.footprint import ExpertFootprint
from engine.experts.read_probe import ReadSpeed, probe_reads, write_scratch_file
from engine.json_record import write_json_record

log = logging.getLogger(__name__)

# The engine within a budget holding every expert (experts on the mapped file, the expert
# manager's router hook and lookahead running) against in memory (all repacked): 9.6
# against 16.5 tokens/s on the synthetic 4B, 2-core EPYC; used when only one was measured.
BUDGET_COMPUTE_RATIO = 0.58
# Until measured: an NVMe SSD's expert-sized reads and what the 4B decodes in memory on a
# 2-core laptop-class CPU (both as measured on this project's machines).
TYPICAL_DISK_GBPS, TYPICAL_READ_CPU_S_PER_GB = 1.5, 0.3
TYPICAL_4B_IN_MEMORY_TPS = 20.0
PROBE_RANGE_BYTES = 663_552  # one Q4_0 expert matrix of the 4B
PROBE_SCRATCH_BYTES = 512 << 20


@dataclass(frozen=True)
class ComputeSpeed:
    active_bytes_per_token: int  # of the model it was measured on (to scale to another)
    in_memory_tps: float | None = None
    budget_tps: float | None = None

    def seconds(self, in_memory: bool) -> float:
        if in_memory:
            return 1 / self.in_memory_tps if self.in_memory_tps else BUDGET_COMPUTE_RATIO / self.budget_tps
        return 1 / self.budget_tps if self.budget_tps else 1 / (self.in_memory_tps * BUDGET_COMPUTE_RATIO)


@dataclass(frozen=True)
class MachineSpeed:
    disk_gbps: float = TYPICAL_DISK_GBPS
    read_cpu_s_per_gb: float = TYPICAL_READ_CPU_S_PER_GB
    disk_measured_at: float | None = None  # epoch seconds; None: the typical figures
    compute: dict[str, ComputeSpeed] = field(default_factory=dict)

    @property
    def disk_source(self) -> str:
        if self.disk_measured_at is None:
            return f"a typical SSD ({self.disk_gbps:.1f} GB/s; not measured here yet)"
        local = time.localtime(self.disk_measured_at)
        when = f"{local.tm_mday} {time.strftime('%b', local)}"  # no %-d: Windows' strftime lacks it
        return f"your disk reads {self.disk_gbps:.1f} GB/s (measured {when})"

    def compute_source(self, model_id: str) -> str:
        if model_id in self.compute:
            return "measured here"
        if self.compute:
            return "scaled from another model measured here"
        return "typical of a 2-core laptop (not measured here yet)"

    def compute_s_per_token(self, model_id: str, footprint: ExpertFootprint, *, in_memory: bool) -> float:
        own = self.compute.get(model_id)
        if own is not None:
            return own.seconds(in_memory)
        if self.compute:  # the other model's time per weight byte read
            other = next(iter(self.compute.values()))
            return other.seconds(in_memory) * footprint.active_bytes_per_token / other.active_bytes_per_token
        seconds = 1 / TYPICAL_4B_IN_MEMORY_TPS * footprint.active_bytes_per_token / _TYPICAL_4B_ACTIVE_BYTES
        return seconds if in_memory else seconds / BUDGET_COMPUTE_RATIO

    def with_disk(self, reads: ReadSpeed) -> MachineSpeed:
        return replace(self, disk_gbps=reads.gbps, read_cpu_s_per_gb=reads.cpu_s_per_gb, disk_measured_at=time.time())

    def with_compute(self, model_id: str, footprint: ExpertFootprint, tps: float, *, in_memory: bool) -> MachineSpeed:
        """Keep a decode speed seen with every weight resident (the latest one counts)."""
        old = self.compute.get(model_id) or ComputeSpeed(footprint.active_bytes_per_token)
        new = replace(old, **{"in_memory_tps" if in_memory else "budget_tps": tps})
        return replace(self, compute={**self.compute, model_id: new})


# The 4B's weight bytes read per decoded token (engine/experts/footprint.py, its published
# shape): what the typical compute figure is per byte.
_TYPICAL_4B_ACTIVE_BYTES = 536_000_000


def load_machine_speed(path: Path) -> MachineSpeed:
    """The kept figures; typical ones where there are none (a damaged file is only logged)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        compute = {k: ComputeSpeed(**v) for k, v in data.pop("compute", {}).items()}
        return MachineSpeed(**data, compute=compute)
    except FileNotFoundError:
        return MachineSpeed()
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        log.warning("ignoring the machine speed figures in %s: %s", path, exc)
        return MachineSpeed()


def save_machine_speed(path: Path, speed: MachineSpeed) -> None:
    data = asdict(speed)
    write_json_record(path, data)


def measure_disk(folder: Path, model_file: Path | None = None) -> ReadSpeed:
    """Probe the model file where there is one, else a scratch file written in `folder` (the
    models folder: its disk is the one experts will be read from) and removed after."""
    if model_file is not None and model_file.is_file():
        return probe_reads(model_file, PROBE_RANGE_BYTES)
    folder.mkdir(parents=True, exist_ok=True)
    scratch = folder / ".disk-probe.tmp"
    try:
        write_scratch_file(scratch, PROBE_SCRATCH_BYTES)
        return probe_reads(scratch, PROBE_RANGE_BYTES, count=300)
    finally:
        scratch.unlink(missing_ok=True)
