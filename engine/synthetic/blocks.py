"""Random quantised blocks (Q4_0, Q8_0, Q6_K) with a chosen weight spread and mean zero.

Speed matters (the 4B shape is 2.5 GB): each (type, spread) gets a few MB of random blocks,
and a tensor of any size is sliced out of that pool starting at a random block.

Mean zero matters too: uniform random codes dequantise to a small negative mean (Q4_0
-8..7, Q8_0 -128..127, Q6_K -32..31), and every row then carries a bias along the sum of
its inputs, which after ReLU grows layer by layer until the residual stream is dominated by
one direction and every token picks the same experts.
"""

from __future__ import annotations

from collections.abc import Iterator

import gguf
import numpy as np

Q = gguf.GGMLQuantizationType
QUANTISED = (Q.Q4_0, Q.Q8_0, Q.Q6_K)
_POOL_BYTES = (1 << 18) * 18  # about 4.7 MB per pool

# Root mean square of the integer code each type multiplies by its scale(s), as made below.
_Q4_RMS = 4.3  # -7..7 with 0 twice as likely
_Q8_RMS = 73.6  # -127..127
_Q6_RMS = 18.48  # q - 32 for q uniform in 0..63
_Q6_SUBSCALE_RMS = 5.05  # sub-block scales drawn from +-1..8


def block_values(dtype: Q) -> int:
    return gguf.GGML_QUANT_SIZES[dtype][0]


def block_bytes(dtype: Q) -> int:
    return gguf.GGML_QUANT_SIZES[dtype][1]


def _fp16(value: float) -> np.ndarray:
    return np.frombuffer(np.float16(value).tobytes(), np.uint8)


def _q4_0(raw: np.ndarray, std: float) -> np.ndarray:
    # fp16 d, then 16 bytes of two 4-bit codes (weight = d * (code - 8)); code 0 -> 8 (weight 0).
    low, high = raw[:, 2:] & 0x0F, raw[:, 2:] >> 4
    low[low == 0] = 8
    high[high == 0] = 8
    raw[:, 2:] = low | (high << 4)
    raw[:, :2] = _fp16(std / _Q4_RMS)
    return raw


def _q8_0(raw: np.ndarray, std: float) -> np.ndarray:
    # fp16 d, then 32 int8 codes; -128 -> 0 so the codes are symmetric.
    codes = raw[:, 2:].view(np.int8)
    codes[codes == -128] = 0
    raw[:, :2] = _fp16(std / _Q8_RMS)
    return raw


def _q6_k(raw: np.ndarray, std: float) -> np.ndarray:
    # 128 bytes of low nibbles, 64 of high bit pairs, 16 int8 sub-block scales, fp16 d.
    # Codes stay uniform (mean -0.5); scales of random sign make that mean cancel out.
    n = len(raw)
    magnitude = raw[:, 192:208] % 8 + 1
    sign = np.where(raw[:, 192:208] & 0x80, -1, 1)
    raw[:, 192:208] = (magnitude * sign).astype(np.int8).view(np.uint8).reshape(n, 16)
    raw[:, 208:210] = _fp16(std / (_Q6_RMS * _Q6_SUBSCALE_RMS))
    return raw


_MAKERS = {Q.Q4_0: _q4_0, Q.Q8_0: _q8_0, Q.Q6_K: _q6_k}


class BlockPool:
    """A pool of random blocks per (type, weight spread), sliced into tensors of any size."""

    def __init__(self, rng: np.random.Generator) -> None:
        self._rng = rng
        self._pools: dict[tuple[Q, float], bytes] = {}

    def _pool(self, dtype: Q, std: float) -> bytes:
        key = (dtype, std)
        if key not in self._pools:
            size = block_bytes(dtype)
            n = _POOL_BYTES // size
            raw = np.frombuffer(bytearray(self._rng.bytes(n * size)), np.uint8).reshape(n, size)
            self._pools[key] = _MAKERS[dtype](raw, std).tobytes()
        return self._pools[key]

    def chunks(self, dtype: Q, std: float, nbytes: int) -> Iterator[memoryview]:
        """`nbytes` of blocks of `dtype` whose weights have root mean square `std`."""
        pool = memoryview(self._pool(dtype, std))
        size = block_bytes(dtype)
        start = int(self._rng.integers(len(pool) // size)) * size
        remaining = nbytes
        while remaining:
            piece = pool[start : start + remaining]
            yield piece
            remaining -= len(piece)
            start = 0
