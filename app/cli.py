"""The headless command line: `smallthinker SUBCOMMAND ...`.

Run bare, `smallthinker` opens the window; that part lives in `ui.main`, the
composition root, so that these subcommands never import Qt.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import time
from pathlib import Path

from app import cli_serve, cli_summarize
from app.catalog import ModelCatalog
from app.downloads import DownloadProgress, ModelDownloader
from app.errors import AppError
from app.hardware import probe_hardware
from app.hf_token import TokenStore
from app.model_choice import recommend
from app.paths import resources_dir
from app.settings import load_settings
from engine.errors import EngineError
from engine.synthetic import SHAPES, Recipe, RouterSkew, get_shape, write_synthetic_model

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="smallthinker",
        description="SmallThinker Desktop: local chat with the SmallThinker models. "
        "Run without a subcommand to open the window.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="SUBCOMMAND")

    synth = sub.add_parser("synth", help="write a synthetic SmallThinker GGUF with random weights")
    synth.add_argument("out", help="the .gguf file to write")
    synth.add_argument("--shape", choices=sorted(SHAPES), default="tiny", help="model shape (default: tiny)")
    synth.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    synth.add_argument(
        "--recipe",
        choices=[r.value for r in Recipe],
        default=Recipe.DEFAULT.value,
        help="tensor types: 'default' is llama-quantize's Q4_0 mix (output Q6_K), as the official files; "
        "'pure' is all Q4_0",
    )
    synth.add_argument(
        "--hot-experts",
        type=float,
        metavar="FRACTION",
        help="skew the router so this fraction of each layer's experts is hot (e.g. 0.25)",
    )
    synth.add_argument(
        "--hot-scale", type=float, default=2.0, help="router-row norm factor of the hot experts (default: 2)"
    )
    synth.add_argument("--verify", action="store_true", help="load the file with llama.cpp and decode a few tokens")

    download = sub.add_parser("download", help="download a SmallThinker model from Hugging Face (resumable)")
    download.add_argument(
        "model", nargs="?", default="auto", choices=["auto", "4b", "21b"], help="which model (default: auto)"
    )
    download.add_argument("--models-dir", type=Path, help="where to keep models (default: the folder set in Settings)")

    models = sub.add_parser("models", help="list the models: catalog, what is on disk, what this machine suits")
    models.add_argument("--models-dir", type=Path, help="where models are kept (default: the folder set in Settings)")

    cli_summarize.add_parser(sub)
    cli_serve.add_parser(sub)

    bench = sub.add_parser("bench", help="run a benchmark from bench/ (source checkouts only)")
    bench.add_argument("name", choices=sorted(BENCHMARKS), help="which benchmark")
    bench.add_argument("bench_args", nargs=argparse.REMAINDER, help="arguments for the benchmark (see its --help)")
    return parser


class ProgressBar:
    """A one-line progress bar on stderr, redrawn at most ten times a second.

    When stderr is not a terminal (a log, CI) it prints a line per tenth instead.
    """

    def __init__(self, label: str) -> None:
        self.label = label
        self.start = time.perf_counter()
        self.last_draw = 0.0
        self.last_tenth = -1
        self.is_tty = sys.stderr.isatty()

    def __call__(self, done: int, total: int) -> None:
        now = time.perf_counter()
        finished = done >= total
        tenth = 10 * done // max(total, 1)
        if self.is_tty and not finished and now - self.last_draw < 0.1:
            return
        if not self.is_tty and tenth == self.last_tenth:
            return
        self.last_draw, self.last_tenth = now, tenth
        width = 30
        filled = width * done // max(total, 1)
        rate = done / max(now - self.start, 1e-9) / 1e6
        line = (
            f"{self.label} [{'#' * filled}{'.' * (width - filled)}] "
            f"{done / 1e6:,.0f}/{total / 1e6:,.0f} MB {rate:,.0f} MB/s"
        )
        sys.stderr.write(f"\r{line}" if self.is_tty else f"{line}\n")
        if finished and self.is_tty:
            sys.stderr.write("\n")
        sys.stderr.flush()


def _run_synth(args: argparse.Namespace) -> int:
    skew = RouterSkew(hot_fraction=args.hot_experts, scale=args.hot_scale) if args.hot_experts else None
    path = write_synthetic_model(
        get_shape(args.shape),
        args.out,
        seed=args.seed,
        skew=skew,
        recipe=Recipe(args.recipe),
        progress=ProgressBar(f"writing {args.shape}"),
    )
    print(f"wrote {path} ({path.stat().st_size:,} bytes)")
    if args.verify:
        from engine.config import EngineConfig, SamplingParams
        from engine.engine import Engine

        with Engine(path, EngineConfig(n_ctx=512)) as engine:
            result = engine.chat(
                [{"role": "user", "content": "Say something about the weather."}],
                SamplingParams(temperature=0.0, max_tokens=8),
            )
        stats = result.stats
        print(
            f"llama.cpp loaded it in {engine.load_seconds:.2f} s ({engine.memory_mode.value}), prefilled "
            f"{stats.prefill_tokens} tokens and decoded {stats.tokens_out} "
            f"at {stats.decode_tokens_per_second:.1f} tokens/s"
        )
    return 0


def _models_dir(args: argparse.Namespace) -> Path:
    """--models-dir, else the folder chosen in the app's settings."""
    return args.models_dir or load_settings().models_path()


def _run_download(args: argparse.Namespace) -> int:
    catalog = ModelCatalog.load()
    model_id = args.model
    if model_id == "auto":
        choice = recommend(probe_hardware(_models_dir(args)), catalog)
        print(choice.reason)
        model_id = choice.model_id
    entry = catalog.get(model_id)
    bar = ProgressBar(f"{entry.display_name}")

    def on_progress(p: DownloadProgress) -> None:
        labels = {"verifying": "verifying", "waiting": "waiting for another download of it"}
        bar.label = labels.get(p.phase, entry.display_name)
        bar(p.done_bytes, p.total_bytes)

    path = ModelDownloader(_models_dir(args), token=TokenStore().load()).download(entry, progress=on_progress)
    print(f"{entry.display_name} is ready: {path}")
    return 0


def _run_models(args: argparse.Namespace) -> int:
    catalog = ModelCatalog.load()
    downloader = ModelDownloader(_models_dir(args))
    for entry in catalog.entries:
        local = downloader.local_path(entry)
        incomplete = downloader.incomplete_file(entry) if local is None else None
        where = f"downloaded: {local}" if local else "not downloaded"
        if incomplete:
            where = f"incomplete: {incomplete[0]} ({incomplete[1]}); `smallthinker download {entry.id}` resumes it"
        approx = "" if entry.size_is_exact else "about "
        print(f"{entry.id:5} {entry.display_name:20} {approx}{entry.size_bytes / 1e9:.1f} GB  {where}")
        print(f"      {entry.description}")
    probe = probe_hardware(_models_dir(args))
    choice = recommend(probe, catalog)
    features = ", ".join(sorted(probe.cpu_features)) or "none detected"
    print(f"\nThis machine: {probe.physical_cores} cores ({probe.logical_cores} threads), CPU features: {features}")
    print(f"Recommended: {catalog.get(choice.model_id).display_name}, {choice.mode.value}. {choice.reason}")
    return 0


# Benchmarks are scripts in the repository's bench/ folder, not part of the installed app.
BENCHMARKS = {
    "context": "context.py",
    "engine": "engine.py",
    "memory": "memory_budget.py",
    "predict": "predict.py",
    "server": "server.py",
    "summarize": "summarize.py",
    "ui": "ui.py",
}


def _run_bench(args: argparse.Namespace) -> int:
    script = resources_dir().parent / "bench" / BENCHMARKS[args.name]
    if not script.is_file():
        print(f"smallthinker bench: {script} is missing; benchmarks run from a source checkout", file=sys.stderr)
        return 1
    return subprocess.call([sys.executable, str(script), *args.bench_args])


_COMMANDS = {
    "synth": _run_synth,
    "download": _run_download,
    "models": _run_models,
    "bench": _run_bench,
    "summarize": cli_summarize.run,
    "serve": cli_serve.run,
}


def run_command(args: argparse.Namespace) -> int:
    """Run a parsed subcommand; turn expected failures into a message and exit code 1."""
    try:
        return _COMMANDS[args.command](args)
    except (AppError, EngineError, OSError) as exc:
        print(f"smallthinker {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"smallthinker {args.command}: interrupted", file=sys.stderr)
        return 130


def configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
