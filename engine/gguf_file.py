"""A strict, fast reader of a GGUF file's header, metadata and tensor table.

Why not `gguf.GGUFReader`: it decodes every array (151,936 tokenizer strings) and maps
the whole file, which takes 5 s on the 4B file and leaves a second mapping behind. Here
large arrays are skipped, every read is bounds-checked (a truncated or random file gives
a `ModelLoadError`, never an IndexError or a crash), and nothing stays mapped.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

from engine.errors import ModelLoadError

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
_MAX_TENSORS = 1_000_000
_MAX_KV = 100_000
_MAX_DIMS = 4
_KEEP_ARRAY_MAX = 64  # arrays longer than this (token lists, merges) are skipped
_MAX_ARRAY_DEPTH = 4  # arrays of arrays nested deeper are refused (no recursion without end)

# GGUF value types -> struct format of one element (strings and arrays handled apart)
_SCALAR_FORMATS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dims: tuple[int, ...]  # ggml order: innermost (row length) first
    ggml_type: int
    offset: int  # absolute offset in the file
    nbytes: int


@dataclass(frozen=True)
class GgufContents:
    version: int
    metadata: dict[str, object]  # skipped arrays appear as ("array", length)
    tensors: dict[str, TensorInfo]
    data_offset: int
    file_size: int


class _Cursor:
    """Bounds-checked little-endian reads from a bytes buffer."""

    def __init__(self, buf: bytes, file_size: int) -> None:
        self.buf, self.pos, self.file_size = buf, 0, file_size

    def need(self, n: int) -> None:
        if self.pos + n > len(self.buf):
            raise _BufferTooShortError if len(self.buf) < self.file_size else _TruncatedError

    def unpack(self, fmt: str):
        size = struct.calcsize(fmt)
        self.need(size)
        value = struct.unpack_from(fmt, self.buf, self.pos)[0]
        self.pos += size
        return value

    def string(self) -> str:
        length = self.unpack("<Q")
        self.need(length)
        raw = self.buf[self.pos : self.pos + length]
        self.pos += length
        return raw.decode("utf-8", errors="replace")

    def skip_strings(self, count: int) -> None:
        for _ in range(count):
            length = self.unpack("<Q")
            self.need(length)
            self.pos += length


class _BufferTooShortError(Exception):
    pass


class _TruncatedError(Exception):
    pass


def _read_value(cur: _Cursor, vtype: int, depth: int = 0):
    if vtype in _SCALAR_FORMATS:
        return cur.unpack(_SCALAR_FORMATS[vtype])
    if vtype == _STRING:
        return cur.string()
    if vtype == _ARRAY:
        if depth >= _MAX_ARRAY_DEPTH:
            raise ValueError(f"metadata arrays are nested more than {_MAX_ARRAY_DEPTH} deep")
        item_type, count = cur.unpack("<I"), cur.unpack("<Q")
        if count > _KEEP_ARRAY_MAX:
            if item_type == _STRING:
                cur.skip_strings(count)
            elif item_type in _SCALAR_FORMATS:
                size = struct.calcsize(_SCALAR_FORMATS[item_type]) * count
                cur.need(size)
                cur.pos += size
            else:
                raise ValueError(f"unsupported array element type {item_type}")
            return ("array", count)
        return [_read_value(cur, item_type, depth + 1) for _ in range(count)]
    raise ValueError(f"unknown metadata value type {vtype}")


def tensor_nbytes(dims: tuple[int, ...], ggml_type: int) -> int:
    try:
        block_size, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(ggml_type)]
    except (ValueError, KeyError):
        raise ValueError(f"unknown tensor type {ggml_type}") from None
    n = 1
    for d in dims:
        n *= d
    if dims and dims[0] % block_size:
        raise ValueError(f"row length {dims[0]} is not a multiple of the block size {block_size}")
    return n // block_size * type_size


def _parse(buf: bytes, file_size: int) -> GgufContents:
    cur = _Cursor(buf, file_size)
    cur.need(4)
    if buf[:4] != GGUF_MAGIC:
        raise ValueError("it does not start with the GGUF signature")
    cur.pos = 4
    version = cur.unpack("<I")
    if version not in SUPPORTED_VERSIONS:
        raise ValueError(f"GGUF version {version} is not supported (2 and 3 are)")
    n_tensors, n_kv = cur.unpack("<Q"), cur.unpack("<Q")
    if n_tensors > _MAX_TENSORS or n_kv > _MAX_KV:
        raise ValueError(f"implausible header ({n_tensors} tensors, {n_kv} metadata keys)")
    metadata: dict[str, object] = {}
    for _ in range(n_kv):
        key = cur.string()
        metadata[key] = _read_value(cur, cur.unpack("<I"))
    raw_tensors = []
    for _ in range(n_tensors):
        name = cur.string()
        n_dims = cur.unpack("<I")
        if not 0 < n_dims <= _MAX_DIMS:
            raise ValueError(f"tensor {name!r} has {n_dims} dimensions")
        dims = tuple(cur.unpack("<Q") for _ in range(n_dims))
        raw_tensors.append((name, dims, cur.unpack("<I"), cur.unpack("<Q")))
    alignment = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
        raise ValueError(f"invalid alignment {alignment!r}")
    data_offset = (cur.pos + alignment - 1) // alignment * alignment
    tensors = {}
    for name, dims, ggml_type, rel_offset in raw_tensors:
        nbytes = tensor_nbytes(dims, ggml_type)
        offset = data_offset + rel_offset
        if offset + nbytes > file_size:
            raise _TruncatedError(f"tensor {name!r} ends at byte {offset + nbytes:,} but the file has {file_size:,}")
        tensors[name] = TensorInfo(name, dims, ggml_type, offset, nbytes)
    return GgufContents(version, metadata, tensors, data_offset, file_size)


def read_gguf(path: str | os.PathLike[str]) -> GgufContents:
    """Parse `path`'s header, metadata and tensor table; raise `ModelLoadError` with the reason."""
    path = Path(path)
    try:
        file_size = path.stat().st_size
        if path.is_dir():
            raise ModelLoadError(f"{path} is a folder, not a model file")
        if file_size == 0:
            raise ModelLoadError(f"{path.name} is empty (0 bytes): download or copy it again")
        chunk = 16 << 20
        with open(path, "rb") as f:
            while True:
                f.seek(0)
                buf = f.read(min(chunk, file_size))
                try:
                    return _parse(buf, file_size)
                except _BufferTooShortError:
                    chunk *= 4
    except FileNotFoundError:
        raise ModelLoadError(f"{path} does not exist") from None
    except PermissionError:
        raise ModelLoadError(f"{path} cannot be read (permission denied)") from None
    except OSError as exc:  # a symlink loop, a disk error, a name too long...
        raise ModelLoadError(f"{path} cannot be read: {exc.strerror or exc}") from None
    except _TruncatedError as exc:
        detail = f" ({exc})" if str(exc) else ""
        raise ModelLoadError(
            f"{path.name} is incomplete{detail}: it may be a download that did not finish; download it again"
        ) from None
    except (ValueError, UnicodeDecodeError, struct.error) as exc:
        raise ModelLoadError(f"{path.name} is not a valid GGUF model file: {exc}") from None
