"""Copies of a valid GGUF with one thing changed, for the tests of malformed model files."""

from __future__ import annotations

from pathlib import Path

import gguf
from gguf.scripts.gguf_new_metadata import MetadataDetails, copy_with_new_metadata

GGUF_MAGIC_V3 = b"GGUF" + (3).to_bytes(4, "little")


def edited_copy(src: Path, dst: Path, metadata: dict | None = None, flatten: tuple[str, ...] = ()) -> Path:
    """`src` written to `dst` with `metadata` {key: (GGUFValueType, value)} set and the
    tensors named in `flatten` made one-dimensional (same bytes)."""
    reader = gguf.GGUFReader(src)
    arch = reader.get_field(gguf.Keys.General.ARCHITECTURE).contents()
    writer = gguf.GGUFWriter(dst, arch=arch)
    new = {key: MetadataDetails(vtype, value) for key, (vtype, value) in (metadata or {}).items()}
    reader.tensors = [t._replace(data=t.data.reshape(-1)) if t.name in flatten else t for t in reader.tensors]
    copy_with_new_metadata(reader, writer, new, remove_metadata=())
    return dst


def deeply_nested_array(dst: Path, depth: int) -> Path:
    """A GGUF whose one metadata value is an array of an array of ... `depth` deep."""
    key = b"smallthinker.nested"
    parts = [GGUF_MAGIC_V3, (0).to_bytes(8, "little"), (1).to_bytes(8, "little")]
    parts += [len(key).to_bytes(8, "little"), key, (9).to_bytes(4, "little")]  # 9: array
    parts += [(9).to_bytes(4, "little") + (1).to_bytes(8, "little")] * (depth - 1)
    parts += [(4).to_bytes(4, "little") + (1).to_bytes(8, "little") + (7).to_bytes(4, "little")]  # [uint32 7]
    dst.write_bytes(b"".join(parts))
    return dst
