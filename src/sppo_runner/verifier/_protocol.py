"""Framing of the parent <-> worker protocol: 4-byte big-endian length + JSON.

Kept apart from ``_worker`` so that importing the package never imports the
worker's ``__main__`` module (``python -m`` would warn about it).
"""

from __future__ import annotations

import json
import struct

_HEADER = struct.Struct(">I")
MAX_FRAME = 1 << 22


def read_frame(stream) -> dict | None:
    """Reads one frame; ``None`` at EOF."""
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None
    (size,) = _HEADER.unpack(header)
    if size > MAX_FRAME:
        return None
    body = stream.read(size)
    if len(body) < size:
        return None
    return json.loads(body.decode("utf-8"))


def encode_frame(message: dict) -> bytes:
    """Serialises one message as a frame."""
    body = json.dumps(message).encode("utf-8")
    return _HEADER.pack(len(body)) + body
