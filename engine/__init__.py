"""Inference: llama.cpp, memory tricks and synthetic models. No Qt here."""

import os

# llama.cpp's CPU threads are OpenMP's: a worker with nothing to do spins GOMP_SPINCOUNT times
# (300,000 by default: milliseconds) before it sleeps, at each of llama.cpp's barriers and while
# the expert manager's callback runs or waits for a read. Spinning there holds the core that the
# kernel's read completions and our I/O thread need (26% of the machine's CPU at a 1 GiB budget,
# an AMD EPYC, 2 cores, perf); sleeping costs a wake-up at the next barrier. Measured on the
# synthetic 4B, interleaved runs: on that EPYC, in memory 14.9/14.1/13.6 tokens/s by default,
# 15.0/13.6/13.8 with 1000; at a 1 GiB budget 2.43/2.71 against 2.85/3.26. On an Intel Xeon (2
# cores, DIRECT reads), 20000 against 1000: at 1 GiB the time a token not spent waiting for reads
# was 7 ms lower (90.3 against 97.1 ms, lower in 8 of 10 pairs; the waits follow the disk),
# in memory 18.9/17.1/18.1 against 18.2/18.4/18.2 tokens/s, the 21B at 8 GiB 2.59/2.63 against
# 2.52/2.49; 20 million was clearly slower there. (A count is not a time: each spin is a PAUSE
# instruction, whose latency differs between CPUs, so on the EPYC 20000 is not measured against
# 1000. OMP_WAIT_POLICY=PASSIVE was 15-35% slower in memory there.) libgomp reads it once,
# when llama_cpp is first imported, which only this package does; a value set by the user wins.
os.environ.setdefault("GOMP_SPINCOUNT", "20000")
