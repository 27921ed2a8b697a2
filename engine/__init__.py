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
# 1000. OMP_WAIT_POLICY=PASSIVE was 15-35% slower in memory there.)
# Once the computing thread issued the direct reads itself (no I/O thread to make room for),
# the EPYC at 1 GiB, 128 tokens, three interleaved pairs each against 20000: 300000 decoded
# 6.91/7.30/7.27 against 6.12/5.81/7.21 tokens/s, 10 million 6.41/8.09/7.55 against 6.68/6.06/
# 7.50, 100 million 7.09/6.41/7.36 against 6.04/5.99/5.18; there 20000 spins last about half a
# millisecond, shorter than most of the router hook's calls, so the worker slept through each
# and was woken at the next barrier. 300000 (libgomp's own default) spins about 8 ms there; 10
# million spun 0.26 s after a reply, 100 million 2.7 s (a core busy for nothing while the user
# reads). libgomp reads it once, when llama_cpp is first imported, which only this package
# does; a value set by the user wins.
os.environ.setdefault("GOMP_SPINCOUNT", "300000")
