"""Inference: llama.cpp, memory tricks and synthetic models. No Qt here."""

import os

# llama.cpp's CPU threads are OpenMP's: a worker with nothing to do spins GOMP_SPINCOUNT times
# (300,000 by default: milliseconds) before it sleeps. While the expert manager's callback runs
# or waits for a read, that spinning worker holds the core the kernel's read completions and our
# I/O thread need: 26% of the machine's CPU at a 1 GiB budget on 2 cores (perf). 1000 keeps the
# spin across llama.cpp's own barriers, which are short. Measured on the synthetic 4B (AMD EPYC,
# 2 cores, interleaved runs): in memory 14.9/14.1/13.6 tokens/s by default, 15.0/13.6/13.8 with
# 1000; at a 1 GiB budget 2.43/2.71 against 2.85/3.26. (OMP_WAIT_POLICY=PASSIVE sleeps at every
# barrier: 15-35% slower in memory.) libgomp reads it once, when llama_cpp is first imported,
# which only this package does; a value set by the user wins.
os.environ.setdefault("GOMP_SPINCOUNT", "1000")
