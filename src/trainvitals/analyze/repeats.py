"""Event files whose records repeat one layout, read a stretch at a time.

Our `TensorBoardSink` writes one event a step holding every tag's value, so a long run
is millions of records of one length whose bytes differ only in the wall time, the
step and the values (the layout changes only where the step's varint grows a byte).
Such a stretch is found from the records' 12-byte headers alone (equal headers: equal
lengths, and a valid length CRC), and decoded from the offsets of its first record:
every other record must hold that record's bytes everywhere else, byte for byte, so
it decodes as the first one does (`tfrecord._decode_simple`, which checks the layout
field by field). A record that differs ends the stretch and goes the general way.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from trainvitals.analyze.tfrecord import _FOOTER, _HEADER, _decode_simple, _short_header_crcs

__all__ = ["MIN_RUN", "same_length_run", "decode_run"]

MIN_RUN = 16  # records: a shorter stretch is read the general way


def same_length_run(a: np.ndarray, pos: int, size: int) -> tuple[int, int]:
    """(count, stride): how many whole records from `pos` on, of `a[:size]`, have the
    header of the one at `pos`, and the bytes from one to the next; (0, 0) when fewer
    than `MIN_RUN` or `pos` holds no valid header of a record under 64 KiB."""
    if pos + _HEADER > size or a[pos + 2:pos + 8].any():
        return 0, 0
    n = int(a[pos]) | int(a[pos + 1]) << 8
    if int(a[pos + 8:pos + 12].view("<u4")[0]) != int(_short_header_crcs()[n]):
        return 0, 0
    stride = n + _HEADER + _FOOTER
    most = (size - pos) // stride
    if most < MIN_RUN:
        return 0, 0
    heads = as_strided(a[pos:], shape=(most, _HEADER), strides=(stride, 1), writeable=False)
    if not (heads[:MIN_RUN] == heads[0]).all():  # a quick look before the whole stretch
        return 0, 0
    same = (heads == heads[0]).all(axis=1)
    count = most if same.all() else int(np.argmin(same))
    return count, stride


def decode_run(buf: memoryview, a: np.ndarray, at: int, count: int, stride: int, ids: dict[bytes, int]):
    """Decode up to `count` records of one length, data at `at`, `stride` bytes apart.

    Returns (records decoded, tag id, step, value, record index), the last four per
    value in file order; records decoded is 0 when the first record is not a scalar
    event (the caller reads them the general way), and stops short at the first record
    whose layout differs from the first one's."""
    n = stride - _HEADER - _FOOTER
    ok, rec, step0, t0, t1, _ = _decode_simple(a, np.array([at]), np.array([n]))
    if not ok[0] or not len(rec):
        return 0, None
    rows = as_strided(a[at:], shape=(count, n), strides=(stride, 1), writeable=False)
    varying = np.zeros(n, dtype=bool)
    varying[1:9] = True  # wall_time
    width = 0
    if a[at + 9] == 0x10:  # a step varint follows
        while a[at + 10 + width] & 0x80:
            width += 1
        width += 1
        varying[10:10 + width] = True
    value_at = (t1 + 1 - at).tolist()
    for v in value_at:
        varying[v:v + 4] = True
    same = np.ones(count, dtype=bool)
    edges = np.flatnonzero(np.diff(np.concatenate(([True], varying, [True])).astype(np.int8)))
    for lo, hi in zip(edges[::2].tolist(), edges[1::2].tolist()):  # the spans every record shares
        same &= (rows[:, lo:hi] == rows[0, lo:hi]).all(axis=1)
    for k in range(width):  # the step varint's length: continuation bits on all but its last byte
        same &= (rows[:, 10 + k] >= 0x80) if k < width - 1 else (rows[:, 10 + k] < 0x80)
    m = count if same.all() else int(np.argmin(same))
    rows = rows[:m]
    steps = np.zeros(m, dtype=np.uint64)
    for k in range(width):
        steps |= (rows[:, 10 + k] & 0x7F).astype(np.uint64) << np.uint64(7 * k)
    tag_ids = np.array([ids.setdefault(bytes(buf[s:e]), len(ids)) for s, e in zip(t0.tolist(), t1.tolist())], np.int32)
    values = np.empty((m, len(value_at)), dtype=np.float64)
    for j, v in enumerate(value_at):
        values[:, j] = np.ascontiguousarray(rows[:, v:v + 4]).view("<f4")[:, 0]
    per = len(value_at)
    return m, (np.tile(tag_ids, m), np.repeat(steps.view(np.int64), per), values.reshape(-1),
               np.repeat(np.arange(m, dtype=np.int64), per))
