"""How many bytes llama.cpp allocates for the KV cache, global and sliding-window layers apart.

Mirrors llama.cpp 0.3.36's sizing (llama-context.cpp, llama-kv-cache-iswa.cpp): the
context is padded to 256 cells; with sliding-window layers and `swa_full` off, those
layers get min(n_ctx, window + n_ubatch) cells, padded to 256 as well.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.config import KvType
from engine.model_info import ModelInfo

_PAD = 256
# bytes per element of the K and V caches (q8_0: 34 bytes per block of 32)
_ELEMENT_BYTES = {KvType.F16: 2.0, KvType.Q8_0: 34 / 32}


def _pad(n: int) -> int:
    return (n + _PAD - 1) // _PAD * _PAD


@dataclass(frozen=True)
class KvLayout:
    global_layers: int
    window_layers: int
    global_cells: int
    window_cells: int
    bytes_per_cell_per_layer: int  # K and V together

    @property
    def global_bytes(self) -> int:
        return self.global_layers * self.global_cells * self.bytes_per_cell_per_layer

    @property
    def window_bytes(self) -> int:
        return self.window_layers * self.window_cells * self.bytes_per_cell_per_layer

    @property
    def total_bytes(self) -> int:
        return self.global_bytes + self.window_bytes


def kv_layout(info: ModelInfo, n_ctx: int, n_ubatch: int, kv_type: KvType, *, full_window: bool = False) -> KvLayout:
    """`full_window`: llama.cpp's swa_full, the sliding-window layers sized like the global ones."""
    cells = _pad(n_ctx)
    n_global = info.n_global_layers
    window_cells = 0
    if info.sliding_window:
        window_cells = cells if full_window else _pad(min(cells, info.sliding_window + n_ubatch))
    per_cell = round(2 * info.n_head_kv * info.head_dim * _ELEMENT_BYTES[kv_type])
    return KvLayout(
        global_layers=n_global,
        window_layers=info.n_layer - n_global,
        global_cells=cells,
        window_cells=window_cells,
        bytes_per_cell_per_layer=per_cell,
    )
