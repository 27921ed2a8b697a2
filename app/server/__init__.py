"""The OpenAI-compatible local server over the loaded model.

host.py: the one engine and the turns taken at it (the window's chat, each request);
api.py: the HTTP routes (FastAPI); generation.py: an answer streamed from the engine's
thread into asyncio; runner.py: uvicorn on a thread; config.py, schemas.py, errors.py,
limits.py, stop_text.py: what is accepted and how it is refused.
"""
