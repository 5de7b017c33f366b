"""TFRecord framing, as TensorBoard event files use it: read fast, write correctly.

A record is: uint64 length, uint32 masked CRC32C of the length, the data, uint32 masked
CRC32C of the data (little-endian). Reading skips the data CRC (pure-Python CRC32C costs
more than decoding the event) but checks the length CRC, which is cheap because lengths
repeat, so a corrupt header is told apart from a plausible one.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

__all__ = ["Framing", "split_records", "masked_crc32c", "masked_crc32c_many", "write_records"]

_HEADER = 12  # uint64 length + uint32 crc
_FOOTER = 4


def _crc_table() -> np.ndarray:
    poly = 0x82F63B78  # CRC-32C (Castagnoli), reflected
    table = np.zeros(256, dtype=np.uint32)
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ poly if c & 1 else c >> 1
        table[i] = c
    return table


_TABLE = _crc_table()
_TABLE_LIST = [int(x) for x in _TABLE]


def _mask(crc: int) -> int:
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    """Masked CRC32C of `data`, as TFRecord stores it (pure Python: use for short data)."""
    crc = 0xFFFFFFFF
    table = _TABLE_LIST
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return _mask(crc ^ 0xFFFFFFFF)


def masked_crc32c_many(datas: list[bytes]) -> list[int]:
    """Masked CRC32C of each item, vectorised with numpy over items of equal length."""
    out = [0] * len(datas)
    by_len: dict[int, list[int]] = {}
    for i, d in enumerate(datas):
        by_len.setdefault(len(d), []).append(i)
    for length, idx in by_len.items():
        rows = np.frombuffer(b"".join(datas[i] for i in idx), dtype=np.uint8)
        rows = rows.reshape(len(idx), length)
        crc = np.full(len(idx), 0xFFFFFFFF, dtype=np.uint32)
        for j in range(length):
            crc = _TABLE[(crc ^ rows[:, j]) & 0xFF] ^ (crc >> 8)
        crc ^= np.uint32(0xFFFFFFFF)
        masked = ((crc >> 15) | (crc << 17)) + np.uint32(0xA282EAD8)  # wraps mod 2**32
        for i, c in zip(idx, masked.tolist()):
            out[i] = c
    return out


def write_records(path: str | Path, datas: list[bytes], mode: str = "wb") -> None:
    """Write `datas` as TFRecords with correct CRCs (for tests and benchmarks)."""
    data_crcs = masked_crc32c_many(datas)
    header_crc: dict[int, int] = {}
    parts = []
    for d, dcrc in zip(datas, data_crcs):
        n = len(d)
        if n not in header_crc:
            header_crc[n] = masked_crc32c(struct.pack("<Q", n))
        parts.append(struct.pack("<QI", n, header_crc[n]))
        parts.append(d)
        parts.append(struct.pack("<I", dcrc))
    with open(path, mode) as f:
        f.write(b"".join(parts))


@dataclass
class Framing:
    """Where each record's data lies in a buffer, and what stopped the scan early."""
    offsets: list[int]
    lengths: list[int]
    damage: str = ""  # "" when the buffer ended exactly at a record boundary


def split_records(buf: bytes | memoryview) -> Framing:
    """Locate every record in `buf`; stop at the first truncated or corrupt header."""
    offsets: list[int] = []
    lengths: list[int] = []
    unpack = struct.Struct("<QI").unpack_from
    known: dict[int, int] = {}  # length -> its masked crc
    end = len(buf)
    pos = 0
    damage = ""
    while pos < end:
        if pos + _HEADER > end:
            damage = "truncated"
            break
        n, crc = unpack(buf, pos)
        expected = known.get(n)
        if expected is None:
            expected = masked_crc32c(struct.pack("<Q", n))
            if len(known) < 65536:
                known[n] = expected
        if crc != expected:
            damage = "corrupt"
            break
        nxt = pos + _HEADER + n + _FOOTER
        if nxt > end:
            damage = "truncated"
            break
        offsets.append(pos + _HEADER)
        lengths.append(n)
        pos = nxt
    return Framing(offsets, lengths, damage)


def iter_datas(buf: bytes, framing: Framing) -> Iterable[bytes]:
    for o, n in zip(framing.offsets, framing.lengths):
        yield buf[o:o + n]
