from __future__ import annotations

import pytest

from engine.config import EngineConfig
from engine.engine import Engine


@pytest.fixture
def tiny_engine(tiny_model_path):
    engine = Engine(tiny_model_path, EngineConfig(n_ctx=2048, n_threads=2))
    yield engine
    engine.close()
