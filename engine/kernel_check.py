"""Try llama.cpp's fastest kernels in a child process before the app relies on them.

Some llama.cpp builds crash on some CPUs: on CPUs with AMX (Sapphire Rapids class Xeons)
llama.cpp repacks Q4_0 weights for its AMX matmul, which segfaults on the first decode of
these models (ggml-org/llama.cpp#20824); a portable build can also pick a CPU variant that
misbehaves. A crash in-process would take the whole app down, so before the first model
load with a given build on a given CPU, a child process loads a tiny synthetic model with
the same settings and decodes a few tokens:

- it works: the repacked ("fast") kernels are used;
- it dies: the child tries again without repacking (llama.cpp's plain kernels, 1.2-1.5x
  slower to decode: 1.2x on an AMX Xeon, 1.5x on an AMD machine); if that works the engine
  runs in that "safe" mode and says why;
- both die: loading is refused with a message, instead of a crash.

The verdict is kept per build and CPU (in memory, and in a JSON file when a folder is
given), so the probe runs once. A frozen app has no `python -m`: its entry point hands
`--probe-kernels MODE` to `child_main` (see ui/main.py).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from engine.config import Kernels
from engine.json_record import write_json_record

log = logging.getLogger(__name__)

VERDICT_FILE = "kernel-check.json"
FROZEN_FLAG = "--probe-kernels"
_TIMEOUT_S = 180.0
_OK_MARK = "kernel probe decoded"
_TIMED_OUT = "did not finish within"


@dataclass(frozen=True)
class KernelVerdict:
    kernels: Kernels | None  # None: neither works on this CPU
    reason: str  # why the fast kernels are not used ("" when they are)


def llama_system_info() -> str:
    """llama.cpp's report of what the installed build was compiled with (AVX2 = 1, REPACK = 1, ...)."""
    import llama_cpp  # here, so that the frozen app's entry point can import this module cheaply

    return llama_cpp.llama_print_system_info().decode(errors="replace")


def build_identity() -> str:
    """Which llama.cpp build runs on which CPU: a new build or another CPU probes again."""
    import llama_cpp

    try:
        lines = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines()
        cpu = "|".join(sorted({line for line in lines if line.startswith(("model name", "flags"))}))
    except OSError:
        cpu = platform.processor()
    info = llama_system_info()
    library = Path(llama_cpp.__file__).parent / "lib"
    stamp = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in library.glob("*") if p.is_file())
    text = f"{llama_cpp.__version__}|{info}|{stamp}|{platform.machine()}|{cpu}"
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def probe_command(kernels: Kernels) -> list[str]:
    if getattr(sys, "frozen", False):
        return [sys.executable, FROZEN_FLAG, kernels.value]
    return [sys.executable, "-m", "engine.kernel_check", kernels.value]


def run_probe(command: list[str], *, ok_mark: str = _OK_MARK) -> str:
    """'' when the child printed `ok_mark` and exited 0; else what happened to it, in words."""
    env = dict(os.environ, PYTHONFAULTHANDLER="")  # a crash is expected here: no traceback dump
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=_TIMEOUT_S, env=env)
    except subprocess.TimeoutExpired:
        return f"it {_TIMED_OUT} {_TIMEOUT_S:.0f} s"
    except OSError as exc:
        return f"it could not be started ({exc})"
    if done.returncode == 0 and ok_mark in done.stdout:
        return ""
    if done.returncode < 0:
        try:
            return f"it was killed by {signal.Signals(-done.returncode).name}"
        except ValueError:
            return f"it was killed by signal {-done.returncode}"
    last = (done.stderr.strip().splitlines() or ["no output"])[-1]
    return f"it exited with status {done.returncode} ({last[:200]})"


# Real probes of this process by build identity: (verdict, conclusive).
_memo: dict[str, tuple[KernelVerdict, bool]] = {}


def kernel_verdict(folder: Path | None, *, command: Callable[[Kernels], list[str]] = probe_command) -> KernelVerdict:
    """Which kernels this build may use on this CPU; probes (once) when nobody knows yet."""
    key = build_identity()
    path = folder / VERDICT_FILE if folder is not None else None
    known = _read(path).get(key)
    if known is not None:
        return known
    real = command is probe_command
    found = _memo.get(key) if real else None
    if found is None:
        found = _probe(command)
        if real:
            _memo[key] = found
    verdict, conclusive = found
    if path is not None and conclusive:  # a timeout may be a busy machine: ask again next time
        _write(path, key, verdict)
    return verdict


def _probe(command: Callable[[Kernels], list[str]]) -> tuple[KernelVerdict, bool]:
    fast = run_probe(command(Kernels.FAST))
    if not fast:
        return KernelVerdict(Kernels.FAST, ""), True
    log.warning("llama.cpp's fast kernels failed a test decode on this CPU: %s", fast)
    safe = run_probe(command(Kernels.SAFE))
    conclusive = _TIMED_OUT not in fast + safe
    why = f"llama.cpp's repacked kernels failed a test decode on this processor ({fast})"
    if not safe:
        return KernelVerdict(Kernels.SAFE, f"{why}; the slower safe kernels are used instead"), conclusive
    return KernelVerdict(None, f"{why}, and so did its plain kernels ({safe})"), conclusive


def _read(path: Path | None) -> dict[str, KernelVerdict]:
    if path is None or not path.is_file():
        return {}
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return {
            key: KernelVerdict(Kernels(v["kernels"]) if v["kernels"] else None, str(v["reason"]))
            for key, v in raw.items()
        }
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        log.warning("ignoring the unreadable kernel check file %s: %s", path, exc)
        return {}


def _write(path: Path, key: str, verdict: KernelVerdict) -> None:
    known = {k: asdict(v) for k, v in _read(path).items()}
    known[key] = asdict(verdict)
    try:
        write_json_record(path, known)
    except OSError as exc:  # the verdict still holds for this session
        log.warning("could not save the kernel check to %s: %s", path, exc)


def child_main(argv: list[str]) -> int:
    """The probe itself: a tiny synthetic model, loaded in memory with `argv[0]`'s kernels."""
    from engine.config import EngineConfig, MemoryMode, SamplingParams
    from engine.engine import Engine
    from engine.synthetic import get_shape, write_synthetic_model

    kernels = Kernels(argv[0]) if argv else Kernels.FAST
    with tempfile.TemporaryDirectory(prefix="smallthinker-kernel-probe-") as folder:
        path = write_synthetic_model(get_shape("tiny"), Path(folder) / "probe.gguf")
        # trial_load off: our own file, and this child is the trial of the kernels
        config = EngineConfig(n_ctx=256, memory_mode=MemoryMode.IN_MEMORY, kernels=kernels, trial_load=False)
        with Engine(path, config) as engine:
            chat = [{"role": "user", "content": "Check the kernels with a prompt of a few tokens."}]
            result = engine.chat(chat, SamplingParams(temperature=0.0, max_tokens=4))
    print(f"{_OK_MARK} {result.stats.tokens_out} tokens with {kernels.value} kernels")
    return 0


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1:]))
