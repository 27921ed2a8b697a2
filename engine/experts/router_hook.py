"""Know each layer's experts before its attention runs, through llama.cpp's eval callback.

SmallThinker's router reads the layer's raw input, which is the previous layer's output
(`l_out-(N-1)`, or `embd` for layer 0). llama.cpp hands us that node as soon as it is
computed, so applying layer N's router (a small F32 matrix) in numpy names the experts
layer N will use while its attention is still to come: time to read them from disk.
The hook also asks for `ffn_moe_topk-N`, llama.cpp's own choice, computed right before
the expert matrices are used.

A prefetch need not have finished by then: llama.cpp uses a layer's expert matrices one
after the other (gate, up, down: one MUL_MAT_ID node each), so the hook waits for each
matrix's reads only right before the node that uses it. llama.cpp asks about the nodes of a
range in order before computing any of them (ggml_backend_sched_compute_splits), so waiting
inside the ask about the node that uses a matrix always comes before that node computes;
to make that ask come right before it, the hook ends a range at the node before it (only
while that matrix's reads are still in flight: each range end costs a synchronisation).
With reads submitted in the same order, a layer's up and down matrices land while its gate
and up products compute, instead of being waited for at the top-k. Measured on the 4B at 1
GiB (an Intel Xeon, 2 cores, DIRECT reads, 128 tokens, four interleaved pairs): 8.51/8.72/
9.02/8.82 tokens/s against 6.75/8.12/8.30/8.17 waiting at the top-k, llama.cpp waiting 10-14
ms a token instead of 24-45; at 2 GiB (few misses) no change, 12.23/11.80 against 11.79/11.92.

The callback runs on the thread calling llama_decode, inside llama.cpp: an exception
there would be swallowed by ctypes and silently stop the computation, so everything is
caught and logged once.
"""

from __future__ import annotations

import ctypes
import logging
from typing import Protocol

import llama_cpp
import numpy as np

from engine.experts.eval_filter import EvalFilter, compiled_library
from engine.experts.map import ExpertMap
from engine.ggml_libs import library

log = logging.getLogger(__name__)

GGML_TYPE_F32 = 0
GGML_TYPE_I32 = 26
_MAX_VIEWS = 4096  # node views kept (two per layer per graph shape)
_PREDICTION, _SELECTION = 0, 1
_DOWN = 2
# The MoE's nodes in llama.cpp's order (build_moe_ffn, separate gate and up; SmallThinker's
# activation is a gated ReLU): name -> (the expert matrix it uses: 0 gate, 1 up, 2 down, or
# -1; the matrix the node computed next uses, or -1).
_MATRIX_NODES = {
    "ffn_moe_gate": (0, 1),
    "ffn_moe_up": (1, -1),
    "ffn_moe_reglu": (-1, _DOWN),
    "ffn_moe_down": (_DOWN, -1),
}


class RouteListener(Protocol):
    lookahead: int  # later layers whose experts to guess for one token (0: none)

    def experts_predicted(
        self, layer: int, experts: np.ndarray, layer_input: np.ndarray, guesses: list[list[int]]
    ) -> None:
        """Bool [n_tokens, n_expert]: the experts `layer` will use per token, before its attention runs.

        `layer_input` (float32 [n_tokens, n_embd], valid during the call only) is what the
        router read. For one token, `guesses` are the experts of up to `lookahead` later
        layers, their routers applied to the same input (from the same matrix product)."""

    def experts_selected(self, layer: int, experts: np.ndarray, *, matrix_calls: bool = False) -> None:
        """llama.cpp's own choice, int [n_tokens, k], right before `layer`'s expert matrices are
        used. `matrix_calls`: `matrix_needed` will follow for each matrix (otherwise whatever
        must be waited for is waited for now)."""

    # Optional: `routing_lost()`, called once when the hook first fails (later calls may not
    # come), and `matrix_needed(layer, matrix)` (block until `layer`'s experts' matrix
    # `matrix` (0 gate, 1 up, 2 down) is in RAM) with `matrix_pending(layer, matrix)` (whether
    # reads of that matrix or a later one are still in flight).


class _TensorHead(ctypes.Structure):
    """The leading fields of `struct ggml_tensor` (ggml.h), stable across versions."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("buffer", ctypes.c_void_p),
        ("ne", ctypes.c_int64 * 4),
        ("nb", ctypes.c_size_t * 4),
    ]


def _ggml_base() -> ctypes.CDLL:
    lib = library("ggml-base")
    lib.ggml_get_name.restype = ctypes.c_char_p
    lib.ggml_get_name.argtypes = [ctypes.c_void_p]
    lib.ggml_get_data.restype = ctypes.c_void_p
    lib.ggml_get_data.argtypes = [ctypes.c_void_p]
    return lib


class RouterHook:
    """An eval callback for `llama_context_params.cb_eval` that reports routing to a listener."""

    def __init__(self, experts: ExpertMap, listener: RouteListener, *, filtered: bool = True) -> None:
        """`callback` and `callback_data` go to llama_context_params' cb_eval and
        cb_eval_user_data. `filtered`: the asks about nodes the hook ignores are answered in C
        (eval_filter.c) where it was built."""
        self._map = experts
        self._listener = listener
        self._lib = _ggml_base()
        last = experts.n_layer - 1
        # node name -> (layer, what it is)
        self._nodes: dict[bytes, tuple[int, int]] = {b"embd": (0, _PREDICTION)}
        self._matrix_nodes: dict[bytes, tuple[int, int, int]] = {}  # name -> (layer, uses, precedes)
        for layer in range(experts.n_layer):
            if layer < last:
                self._nodes[f"l_out-{layer}".encode()] = (layer + 1, _PREDICTION)
            self._nodes[f"ffn_moe_topk-{layer}".encode()] = (layer, _SELECTION)
            for name, (uses, precedes) in _MATRIX_NODES.items():
                self._matrix_nodes[f"{name}-{layer}".encode()] = (layer, uses, precedes)
        # Waits per matrix only once this llama.cpp was seen asking about the down matrix's node
        # after the top-k (a build that names its nodes otherwise keeps waiting at the top-k).
        self._matrix_calls_seen = False
        self._matrix_calls_possible = hasattr(listener, "matrix_needed") and hasattr(listener, "matrix_pending")
        self._last_selected = -1
        self.failures = 0
        self._views: dict[tuple, np.ndarray] = {}  # see _rows
        self._python_callback = llama_cpp.ggml_backend_sched_eval_callback(self._on_node)
        self.callback, self.callback_data = self._python_callback, None
        self.filter = None
        lib = compiled_library() if filtered else None
        if lib is not None:
            wanted = [*self._nodes, *(self._matrix_nodes if self._matrix_calls_possible else ())]
            self.filter = EvalFilter(lib, self._python_callback, self._lib.ggml_get_name, wanted)
            self.callback, self.callback_data = self.filter.callback, self.filter.user_data
        elif filtered:
            log.info("the compiled eval filter is missing: every node's ask goes through Python")

    def _on_node(self, tensor: int, ask: bool, _user_data) -> bool:
        try:
            name = self._lib.ggml_get_name(tensor)
            node = self._nodes.get(name)
            if node is None:  # (after computing a node asked for, False would stop the graph)
                matrix_node = self._matrix_nodes.get(name) if ask and self._matrix_calls_possible else None
                return not ask or (matrix_node is not None and self._before_matrix_node(*matrix_node))
            if ask:
                return True
            layer, kind = node
            if kind == _PREDICTION:
                rows = self._rows(tensor, np.float32)
                if layer == self._map.n_layer - 1:
                    # llama.cpp runs the last layer's experts only for the tokens whose
                    # logits are wanted: the engine asks for the batch's last one.
                    rows = rows[-1:]
                if len(rows) == 1:  # decode: this layer and the guessed ones in one product
                    ahead = min(getattr(self._listener, "lookahead", 0), self._map.n_layer - 1 - layer)
                    chosen, *guesses = self._map.route(layer, rows[0], 1 + ahead)
                    experts = np.zeros((1, self._map.n_expert), dtype=bool)
                    experts[0, chosen] = True
                else:
                    experts, guesses = self._map.select(layer, rows), []
                self._listener.experts_predicted(layer, experts, rows, guesses)
            else:
                self._last_selected = layer
                matrix_calls = self._matrix_calls_seen
                self._listener.experts_selected(layer, self._rows(tensor, np.int32).copy(), matrix_calls=matrix_calls)
        except Exception:  # anything escaping here would silently stop llama.cpp's graph
            self.failures += 1
            if self.failures == 1:
                log.exception("the expert router hook failed; experts are read on demand")
                self._routing_lost()
        return True

    def _before_matrix_node(self, layer: int, uses: int, precedes: int) -> bool:
        """Asked about a node of the MoE (before any node of its range computes): wait for the
        matrix it uses; end the range after it if the next matrix is still being read."""
        if uses >= 0:
            if uses == _DOWN and layer == self._last_selected:
                self._matrix_calls_seen = True
            self._listener.matrix_needed(layer, uses)
        return precedes >= 0 and self._listener.matrix_pending(layer, precedes)

    def _routing_lost(self) -> None:
        lost = getattr(self._listener, "routing_lost", None)
        if lost is not None:
            try:
                lost()
            except Exception:
                log.exception("the expert manager could not fall back to reading experts on demand")

    def _rows(self, tensor: int, dtype) -> np.ndarray:
        """The node's data as [rows, row length], without copying (valid during the callback).

        A view depends only on the node's data address, type, shape and strides, and llama.cpp
        reuses its graph from token to token: views are kept by those (making one took about 24
        us, a tenth of the hook's time per layer; looking one up about 3)."""
        data = self._lib.ggml_get_data(tensor)
        key = (ctypes.string_at(tensor, ctypes.sizeof(_TensorHead)), data, dtype)
        view = self._views.get(key)
        if view is None:
            if len(self._views) > _MAX_VIEWS:  # a graph rebuilt elsewhere in memory: start over
                self._views.clear()
            view = self._views[key] = self._new_view(_TensorHead.from_address(tensor), data, dtype)
        return view

    @staticmethod
    def _new_view(head: _TensorHead, data: int, dtype) -> np.ndarray:
        expected = GGML_TYPE_F32 if dtype is np.float32 else GGML_TYPE_I32
        if head.type != expected or head.ne[2] != 1 or head.ne[3] != 1:
            raise ValueError(f"unexpected node layout: type {head.type}, ne {list(head.ne)}")
        n_cols, n_rows = head.ne[0], head.ne[1]
        item = np.dtype(dtype).itemsize
        if head.nb[0] != item or head.nb[1] % item:
            raise ValueError(f"unexpected node strides {list(head.nb)}")
        span = (n_rows - 1) * head.nb[1] + n_cols * item
        buffer = (ctypes.c_char * span).from_address(data)
        if head.nb[1] == n_cols * item or n_rows == 1:  # contiguous rows (always, so far)
            return np.frombuffer(buffer, dtype=dtype, count=n_rows * n_cols).reshape(n_rows, n_cols)
        return np.lib.stride_tricks.as_strided(
            np.frombuffer(buffer, dtype=dtype), shape=(n_rows, n_cols), strides=(head.nb[1], item)
        )
