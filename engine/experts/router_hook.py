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

Where the listener reads experts to positions of its own (engine/experts/positions.py), the
hook points llama.cpp's expert tensors there once (`point_expert_tensors`) and, each layer,
rewrites llama.cpp's chosen expert ids to positions right after llama.cpp has taken the
experts' weights by them (`ffn_moe_weights-N`); llama.cpp's choice is then read at that node.

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
_PREDICTION, _SELECTION, _WEIGHTS = 0, 1, 2
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
_MATRIX_NODES_USING = [name for name, (uses, _) in _MATRIX_NODES.items() if uses >= 0]


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


class _Tensor(ctypes.Structure):
    """`struct ggml_tensor` (ggml.h) up to its name: what pointing the expert tensors and
    rewriting the chosen ids need (checked against ggml_get_name and ggml_get_data before use)."""

    _fields_ = [
        *_TensorHead._fields_,
        ("op", ctypes.c_int),
        ("op_params", ctypes.c_int32 * 16),
        ("flags", ctypes.c_int32),
        ("src", ctypes.c_void_p * 10),
        ("view_src", ctypes.c_void_p),
        ("view_offs", ctypes.c_size_t),
        ("data", ctypes.c_void_p),
        ("name", ctypes.c_char * 64),
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
            # The chosen experts' weights, taken by expert id: after it, ids may become positions
            # (then llama.cpp's choice is read here, not at the top-k: one range end a layer).
            self._nodes[f"ffn_moe_weights-{layer}".encode()] = (layer, _WEIGHTS)
            for name, (uses, precedes) in _MATRIX_NODES.items():
                self._matrix_nodes[f"{name}-{layer}".encode()] = (layer, uses, precedes)
        # Waits per matrix only once this llama.cpp was seen asking about the down matrix's node
        # after the top-k (a build that names its nodes otherwise keeps waiting at the top-k).
        self._matrix_calls_seen = False
        self._matrix_calls_possible = hasattr(listener, "matrix_needed") and hasattr(listener, "matrix_pending")
        self._last_selected = -1
        self.failures = 0
        self._views: dict[tuple, np.ndarray] = {}  # see _rows
        # Expert tensors pointed at the listener's memory (`point_expert_tensors`): address ->
        # their own data, ne[2], nb[2] and nb[3], to point them back.
        self._pointed: dict[int, tuple[int, int, int, int]] = {}
        self._pointing = False
        self._pointing_failed = False
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
        if self._pointing:
            return self._pointing_node(tensor, ask)
        try:
            name = self._lib.ggml_get_name(tensor)
            node = self._nodes.get(name)
            if node is None:  # (after computing a node asked for, False would stop the graph)
                matrix_node = self._matrix_nodes.get(name) if ask and self._matrix_calls_possible else None
                return not ask or (matrix_node is not None and self._before_matrix_node(*matrix_node))
            layer, kind = node
            if ask:  # (a range ends at a node answered True: it is computed before the next is asked about)
                # With positions llama.cpp's choice is read one node later, with the weights.
                return kind == _PREDICTION or (kind == _WEIGHTS) == bool(self._pointed)
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
                ids = self._rows(tensor if kind == _SELECTION else self._ids_of(tensor, layer), np.int32)
                self._last_selected = layer
                self._listener.experts_selected(layer, ids.copy(), matrix_calls=self._matrix_calls_seen)
                if kind == _WEIGHTS:
                    self._to_positions(ids, layer)
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

    # --- experts at positions (engine/experts/positions.py) ---------------------------------------
    def point_expert_tensors(self, decode) -> bool:
        """Point every layer's expert tensors at the listener's memory (its
        `tensor_placement(layer, matrix)`: the tensor's own data address, to check, the new
        one, the stride from one position to the next and how many positions). llama.cpp
        offers no way to its model's tensors but the graph, so `decode()` evaluates one token
        (its result is meant to be thrown away: its expert products read empty memory) while
        the asks about the MoE's matrix nodes hand over the tensors they use. From then on the
        chosen experts' ids are rewritten to the listener's `expert_positions(layer)`. Returns
        whether every tensor was pointed; if not, none is."""
        self._pointing, self._pointing_failed = True, False
        try:
            decode()
        finally:
            self._pointing = False
        if self._pointing_failed or len(self._pointed) != self._map.n_layer * len(_MATRIX_NODES_USING):
            self.point_expert_tensors_back()
            return False
        return True

    def point_expert_tensors_back(self) -> None:
        for address, (data, ne2, nb2, nb3) in self._pointed.items():
            weight = _Tensor.from_address(address)
            weight.data, weight.ne[2], weight.nb[2], weight.nb[3] = data, ne2, nb2, nb3
        self._pointed.clear()

    def _pointing_node(self, tensor: int, ask: bool) -> bool:
        if ask and not self._pointing_failed:
            try:
                node = self._matrix_nodes.get(self._lib.ggml_get_name(tensor))
                if node is not None and node[1] >= 0:
                    self._point(tensor, node[0], node[1])
            except Exception:
                self._pointing_failed = True
                log.exception("the expert tensors cannot be pointed at positions; experts are read into place")
        return not ask  # (no range ends: nothing is waited for; after computing, False would stop the graph)

    def _point(self, node: int, layer: int, matrix: int) -> None:
        head = _Tensor.from_address(node)
        if head.data != self._lib.ggml_get_data(node) or head.name != self._lib.ggml_get_name(node):
            raise ValueError("this ggml's tensor struct is laid out otherwise")
        if not head.src[0] or head.src[0] in self._pointed:
            return
        weight = _Tensor.from_address(head.src[0])
        own, data, stride, count = self._listener.tensor_placement(layer, matrix)
        matrix_bytes = weight.nb[1] * weight.ne[1]
        if (
            weight.data != own
            or weight.ne[2] != self._map.n_expert
            or weight.ne[3] != 1
            or weight.nb[2] != matrix_bytes
            or matrix_bytes != self._map.matrix_bytes[layer, matrix]
        ):
            raise ValueError(f"layer {layer}'s expert tensor {matrix} is not where or what the file says")
        self._pointed[head.src[0]] = (weight.data, weight.ne[2], weight.nb[2], weight.nb[3])
        weight.data, weight.ne[2], weight.nb[2], weight.nb[3] = data, count, stride, stride * count

    def _ids_of(self, weights: int, layer: int) -> int:
        """The ids node (`ffn_moe_topk-N`) that llama.cpp took the chosen experts' weights by."""
        ids = _Tensor.from_address(weights).src[1]  # (weights = get_rows(probs, ids))
        if not ids or self._lib.ggml_get_name(ids) != f"ffn_moe_topk-{layer}".encode():
            raise ValueError(f"ffn_moe_weights-{layer} is not taken by the top-k's ids")
        return ids

    def _to_positions(self, ids: np.ndarray, layer: int) -> None:
        """llama.cpp has taken the chosen experts' weights by their ids: from here on the ids
        serve only the expert products, so they become the experts' positions, in place."""
        placed = self._listener.expert_positions(layer)[ids]
        if placed.min() < 0:
            raise ValueError(f"layer {layer}: an expert llama.cpp chose has no position")
        ids[...] = placed

    def _routing_lost(self) -> None:
        self.point_expert_tensors_back()  # (the listener's positions are no longer kept up)
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
