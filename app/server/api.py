"""The OpenAI-compatible HTTP API over the loaded model (FastAPI).

GET /v1/models, POST /v1/chat/completions and POST /v1/completions, streamed as
server-sent events or whole. Every request takes its turn at the one engine
(app/server/host.py); a conversation that grows turn by turn reuses its KV cache, so only
the new messages are read (`usage.prompt_tokens_details.cached_tokens` says how many were not).
"""

from __future__ import annotations

import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator

from fastapi import Depends, FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import StreamingResponse

from app.server.config import ServerSettings
from app.server.errors import ApiError, error_body, install_handlers
from app.server.generation import Activity, Generation
from app.server.host import EngineHost
from app.server.limits import BodyLimit
from app.server.schemas import ChatCompletionRequest, CompletionRequest, _Generation
from app.server.stop_text import StopText
from engine.chunks import ChatStats, Chunk, FinishReason

OWNER = "smallthinker-desktop"


def create_app(host: EngineHost, settings: ServerSettings, activity: Activity | None = None) -> FastAPI:
    app = FastAPI(title="SmallThinker Desktop", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.activity = activity or Activity()
    install_handlers(app)
    app.add_middleware(BodyLimit, max_bytes=settings.max_request_bytes)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=["*"], allow_headers=["*"]
        )

    def authorised(request: Request) -> None:
        if not settings.api_key:
            return
        given = request.headers.get("authorization", "")
        token = given[7:] if given[:7].lower() == "bearer " else ""
        if not hmac.compare_digest(token.encode(), settings.api_key.encode()):
            raise ApiError(
                401,
                "Incorrect API key. Use the key set in SmallThinker Desktop's Server settings.",
                code="invalid_api_key",
            )

    def loaded_model(requested: str) -> str:
        model_id = host.model_id
        if model_id is None:
            raise ApiError(
                503, "No model is loaded. Load one in SmallThinker Desktop, or start `smallthinker serve --model`."
            )
        if requested != model_id:
            raise ApiError(
                404,
                f"The model `{requested}` is not loaded here; this server has `{model_id}`.",
                code="model_not_found",
                param="model",
            )
        return model_id

    def max_tokens(body: _Generation) -> int:
        requested = body.requested_tokens
        if requested is not None and requested > settings.max_tokens:
            raise ApiError(400, f"max_tokens is limited to {settings.max_tokens} on this server.", param="max_tokens")
        return requested or settings.max_tokens

    @app.get("/v1/models", dependencies=[Depends(authorised)])
    async def models():
        model_id = host.model_id
        data = [{"id": model_id, "object": "model", "created": 0, "owned_by": OWNER}] if model_id else []
        return {"object": "list", "data": data}

    @app.post("/v1/chat/completions", dependencies=[Depends(authorised)])
    async def chat_completions(body: ChatCompletionRequest, request: Request):
        model_id = loaded_model(body.model)
        messages = [m.as_engine_message() for m in body.messages]
        sampling = body.sampling(max_tokens(body))

        def run(engine, cancel) -> Iterator[Chunk]:
            return engine.stream_chat(messages, sampling, cancel)

        answer = Answer(body, model_id, "chat.completion", "chatcmpl")
        return await answer.respond(host, app.state.activity.new("chat"), run, request)

    @app.post("/v1/completions", dependencies=[Depends(authorised)])
    async def completions(body: CompletionRequest, request: Request):
        model_id = loaded_model(body.model)
        sampling = body.sampling(max_tokens(body))

        def run(engine, cancel) -> Iterator[Chunk]:
            return engine.stream_prompt(engine.tokenize(body.prompt), sampling, cancel)

        answer = Answer(body, model_id, "text_completion", "cmpl")
        return await answer.respond(host, app.state.activity.new("completion"), run, request)

    return app


class Answer:
    """One response in the shape its endpoint promises: whole, or as server-sent events."""

    def __init__(self, body: _Generation, model_id: str, kind: str, id_prefix: str) -> None:
        self.body, self.model_id, self.kind = body, model_id, kind
        self.chat = kind == "chat.completion"
        self.id = f"{id_prefix}-{uuid.uuid4().hex[:24]}"
        self.created = int(time.time())
        self.stop = StopText(body.stops)

    async def respond(self, host: EngineHost, record, run: Callable, request: Request):
        generation = await Generation.start(host, record, run)
        if self.body.stream:
            return StreamingResponse(
                self._events(generation, request), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
            )
        parts, last = [], None
        async for text, final in self._texts(generation):
            parts.append(text)
            last = final or last
        return self._whole("".join(parts), last)

    async def _texts(self, generation: Generation) -> AsyncIterator[tuple[str, Chunk | None]]:
        """(text to send, the final chunk or None); a stop sequence cuts the text and the answer."""
        async for chunk in generation:
            text = self.stop.feed(chunk.text)
            if self.stop.stopped:
                generation.close()  # the final chunk still comes, with the figures
            if chunk.is_final:
                yield text + self.stop.flush(), chunk
                return
            if text:
                yield text, None

    def _finish_reason(self, final: Chunk) -> str:
        if self.stop.stopped:
            return "stop"
        return "length" if final.finish_reason in (FinishReason.LENGTH, FinishReason.CONTEXT_FULL) else "stop"

    @staticmethod
    def _usage(stats: ChatStats) -> dict:
        return {
            "prompt_tokens": stats.tokens_in,
            "completion_tokens": stats.tokens_out,
            "total_tokens": stats.tokens_in + stats.tokens_out,
            "prompt_tokens_details": {"cached_tokens": stats.reused_tokens},
        }

    def _whole(self, text: str, final: Chunk) -> dict:
        reason = self._finish_reason(final)
        if self.chat:
            choice = {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": reason,
                "logprobs": None,
            }
        else:
            choice = {"index": 0, "text": text, "finish_reason": reason, "logprobs": None}
        return {
            "id": self.id,
            "object": self.kind,
            "created": self.created,
            "model": self.model_id,
            "choices": [choice],
            "usage": self._usage(final.stats),
        }

    def _event(self, choices: list, usage: dict | None = None) -> str:
        kind = "chat.completion.chunk" if self.chat else "text_completion"
        event = {"id": self.id, "object": kind, "created": self.created, "model": self.model_id, "choices": choices}
        if usage is not None:
            event["usage"] = usage
        return f"data: {json.dumps(event, ensure_ascii=False)}\n\n"

    def _choice(self, text: str | None, reason: str | None = None, *, role: bool = False) -> dict:
        if not self.chat:
            return {"index": 0, "text": text or "", "finish_reason": reason, "logprobs": None}
        delta = {"role": "assistant", "content": ""} if role else ({"content": text} if text else {})
        return {"index": 0, "delta": delta, "finish_reason": reason, "logprobs": None}

    async def _events(self, generation: Generation, request: Request) -> AsyncIterator[str]:
        try:
            if self.chat:
                yield self._event([self._choice("", role=True)])
            async for text, final in self._texts(generation):
                if await request.is_disconnected():
                    return
                if final is None:
                    yield self._event([self._choice(text)])
                    continue
                if text:
                    yield self._event([self._choice(text)])
                yield self._event([self._choice(None, self._finish_reason(final))])
                options = self.body.stream_options
                if options is not None and options.include_usage:
                    yield self._event([], self._usage(final.stats))
            yield "data: [DONE]\n\n"
        except ApiError as exc:  # after the first chunk: the status is sent, the error goes in the stream
            yield f"data: {json.dumps(error_body(exc.status, exc.message, exc.code))}\n\n"
        finally:
            generation.close()
