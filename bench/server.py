"""Our OpenAI-compatible server against llama-cpp-python's (`python -m llama_cpp.server`).

Both serve the same synthetic 4B model with the same context and threads, each in a process
of its own, one after the other. The workload: CLIENTS concurrent clients, each holding a
multi-turn conversation (every request sends the whole conversation so far plus a new
question), REQUESTS requests in all, answers streamed, greedy, ANSWER_TOKENS tokens at most.
Measured from the client side with the official `openai` client: requests per second over
the run and the median time to the first streamed token. A request waits its turn at
either server (one model, one request at a time), so TTFT includes the queueing.

    python bench/server.py [--model FILE.gguf] [--requests 32] [--clients 4]
    (or: smallthinker bench server)

The last line of output is one JSON object with every figure (`throughput_ratio`: ours/theirs
requests per second; `ttft_speedup`: their median TTFT / ours).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

if not __package__:  # run as a file: `bench` and `engine` must be the packages
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import openai  # noqa: E402

from bench.machine import describe, machine_figures  # noqa: E402
from engine.config import default_threads  # noqa: E402
from engine.synthetic import get_shape, write_synthetic_model  # noqa: E402

N_CTX = 4096
ANSWER_TOKENS = 32
TOPICS = ("the sea", "mountains", "old maps", "bread", "trains", "gardens", "rivers", "winter")
OPENING = (
    "You are a careful assistant. We will talk about {topic}. Background for the whole conversation: "
    + "The committee reviewed the annual report on regional water supply and the budget for repairs. " * 12
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_command(kind: str, model: Path, port: int) -> list[str]:
    threads = str(default_threads())
    if kind == "ours":
        return [sys.executable, "-m", "ui.main", "serve", "--model", str(model), "--port", str(port),
                "--context", str(N_CTX)]  # fmt: skip
    return [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--port", str(port),
            "--host", "127.0.0.1", "--n_ctx", str(N_CTX), "--n_threads", threads,
            "--n_threads_batch", threads]  # fmt: skip


def start_server(kind: str, model: Path, folder: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {
        **os.environ,
        "SMALLTHINKER_CONFIG_DIR": str(folder / "config"),
        "SMALLTHINKER_DATA_DIR": str(folder / "data"),
    }
    log = open(folder / f"{kind}.log", "w")  # noqa: SIM115 - closed with the process
    process = subprocess.Popen(server_command(kind, model, port), stdout=log, stderr=subprocess.STDOUT, env=env)
    base_url = f"http://127.0.0.1:{port}/v1"
    client = openai.OpenAI(base_url=base_url, api_key="bench", max_retries=0, timeout=5)
    deadline = time.monotonic() + 300
    while True:
        if process.poll() is not None:
            raise SystemExit(f"the {kind} server exited:\n{(folder / f'{kind}.log').read_text()[-3000:]}")
        try:
            client.models.list()
            return process, base_url
        except openai.APIConnectionError:
            if time.monotonic() > deadline:
                process.kill()
                raise SystemExit(f"the {kind} server did not start in 300 s") from None
            time.sleep(0.2)


def conversation(client: openai.OpenAI, model_id: str, topic: str, turns: int, ttfts: list[float]) -> None:
    messages = [{"role": "system", "content": OPENING.format(topic=topic)}]
    for turn in range(turns):
        messages.append({"role": "user", "content": f"Question {turn + 1} about {topic}: what comes to mind?"})
        started = time.perf_counter()
        first = None
        parts = []
        stream = client.chat.completions.create(
            model=model_id, messages=messages, max_tokens=ANSWER_TOKENS, temperature=0, stream=True
        )
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                if first is None:
                    first = time.perf_counter() - started
                parts.append(chunk.choices[0].delta.content)
        ttfts.append(first if first is not None else time.perf_counter() - started)
        messages.append({"role": "assistant", "content": "".join(parts)})


def measure(base_url: str, clients: int, requests: int) -> dict:
    client = openai.OpenAI(base_url=base_url, api_key="bench", max_retries=0, timeout=600)
    model_id = client.models.list().data[0].id
    turns = requests // clients
    ttfts: list[float] = []
    threads = [
        threading.Thread(target=conversation, args=(client, model_id, TOPICS[i % len(TOPICS)], turns, ttfts))
        for i in range(clients)
    ]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - started
    if len(ttfts) != turns * clients:
        raise SystemExit(f"only {len(ttfts)} of {turns * clients} requests completed")
    return {
        "requests": len(ttfts),
        "seconds": seconds,
        "requests_per_s": len(ttfts) / seconds,
        "ttft_median_s": statistics.median(ttfts),
        "ttft_p90_s": statistics.quantiles(ttfts, n=10)[-1],
    }


def run(kind: str, model: Path, folder: Path, clients: int, requests: int) -> dict:
    process, base_url = start_server(kind, model, folder)
    try:
        return measure(base_url, clients, requests)
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="a 4B-shape GGUF (default: write a synthetic one)")
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--shape", default="4b", help="synthetic shape when no --model (tests use tiny)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-server-") as tmp:
        folder = Path(tmp)
        model = args.model or write_synthetic_model(get_shape(args.shape), folder / f"synthetic-{args.shape}.gguf")
        figures = {}
        for kind in ("ours", "theirs"):
            figures[kind] = run(kind, model, folder, args.clients, args.requests)
            f = figures[kind]
            print(
                f"{kind:>6}: {f['requests']} requests in {f['seconds']:.1f} s, {f['requests_per_s']:.3f} requests/s, "
                f"median TTFT {f['ttft_median_s'] * 1000:.0f} ms (p90 {f['ttft_p90_s'] * 1000:.0f} ms)",
                flush=True,
            )
    result = {
        "model": str(args.model or f"synthetic {args.shape}"),
        "clients": args.clients,
        "ours": figures["ours"],
        "theirs": figures["theirs"],
        "throughput_ratio": figures["ours"]["requests_per_s"] / figures["theirs"]["requests_per_s"],
        "ttft_speedup": figures["theirs"]["ttft_median_s"] / figures["ours"]["ttft_median_s"],
        "machine": machine_figures(),
    }
    print(describe(result["machine"]))
    print(f"throughput_ratio: {result['throughput_ratio']:.3f}  ttft_speedup: {result['ttft_speedup']:.3f}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
