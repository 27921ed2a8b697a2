"""`smallthinker serve`: the model on an OpenAI-compatible endpoint, headless."""

from __future__ import annotations

import argparse
import os
import threading
from pathlib import Path

from app.engine_settings import engine_config
from app.errors import AppError
from app.settings import load_settings

API_KEY_VARIABLE = "SMALLTHINKER_API_KEY"


def add_parser(sub) -> None:
    from app.server.config import DEFAULT_PORT

    parser = sub.add_parser("serve", help="serve the model on an OpenAI-compatible endpoint")
    parser.add_argument("--model", type=Path, help="the model (default: the one the app last loaded)")
    parser.add_argument(
        "--host", default="127.0.0.1", help="interface to listen on (default: 127.0.0.1, this computer only)"
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default: {DEFAULT_PORT})")
    parser.add_argument(
        "--api-key", help=f"key clients must send (default: ${API_KEY_VARIABLE}; required off 127.0.0.1)"
    )
    parser.add_argument("--context", type=int, help="context length in tokens (default: the app's setting)")
    parser.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="allow browser pages from ORIGIN (repeatable)",
    )


def run(args: argparse.Namespace) -> int:
    from app.server.config import ServerSettings
    from app.server.host import EngineHost, model_id_for
    from app.server.runner import RunningServer

    settings = load_settings()
    model = args.model or (Path(settings.model_path) if settings.model_path else None)
    if model is None:
        raise AppError("no model to serve: pass --model FILE.gguf, or load one in the app first")
    server_settings = ServerSettings(
        host=args.host,
        port=args.port,
        api_key=args.api_key or os.environ.get(API_KEY_VARIABLE, ""),
        cors_origins=tuple(args.cors_origin),
    )
    server_settings.check()  # before minutes of loading
    from engine.engine import Engine

    host = EngineHost()
    with Engine(model, engine_config(settings, context_length=args.context)) as engine:
        host.set_engine(engine, model_id_for(model))
        with RunningServer(host, server_settings) as server:
            print(f"serving {host.model_id} at {server.base_url} (Ctrl+C stops)", flush=True)
            threading.Event().wait()
    return 0
