"""TensorBoard event files: TFRecord framing and scalar decoding, fast.

A record is: uint64 length, uint32 masked CRC32C of the length, the data, uint32 masked
CRC32C of the data (little-endian). The data is an `Event` protobuf. Every length CRC
is checked, so a corrupt or foreign file stops at its first bad header instead of being
misread; the data CRC only with `check_crc` (it costs more than the decoding).

Both halves are vectorised with numpy, so no Python code runs per record: framing finds
every valid header at once and chains them; decoding parses the layout of scalar events
(wall_time, step, simple_values), one value an event (`SummaryWriter.add_scalar`, so HF's
and Lightning's loggers) or many (our `TensorBoardSink`), one pass per value. Any other record
goes through the protobuf parser (`Event.FromString`): the fast path changes speed,
never results.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from numpy.lib.stride_tricks import as_strided

__all__ = ["EventFileScalars", "masked_crc32c", "read_event_file", "write_records"]

_HEADER, _FOOTER = 12, 4
_PAD = 512  # zero bytes after a chunk, so fixed-width gathers near its end stay in bounds
CHUNK_BYTES = 32 << 20
_U64 = struct.Struct("<Q")
_HASH_MUL = np.uint64(0x9E3779B97F4A7C15)  # combines a tag's 8-byte words into one key


def _crc_table() -> np.ndarray:
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):  # CRC-32C (Castagnoli), reflected polynomial
        table = np.where(table & 1, (table >> 1) ^ np.uint32(0x82F63B78), table >> 1)
    return table.astype(np.uint32)


_TABLE = _crc_table()
_TABLE_LIST = _TABLE.tolist()


def masked_crc32c(data: bytes) -> int:
    """Masked CRC32C of `data`, as TFRecord stores it (pure Python: for short data)."""
    crc = 0xFFFFFFFF
    for b in data:
        crc = _TABLE_LIST[(crc ^ b) & 0xFF] ^ (crc >> 8)
    crc ^= 0xFFFFFFFF
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def _masked_crc_rows(rows: np.ndarray) -> np.ndarray:
    """Masked CRC32C of each row of a (n, length) uint8 array."""
    crc = np.full(len(rows), 0xFFFFFFFF, dtype=np.uint32)
    for j in range(rows.shape[1]):
        crc = _TABLE[(crc ^ rows[:, j]) & 0xFF] ^ (crc >> 8)
    crc ^= np.uint32(0xFFFFFFFF)
    return ((crc >> 15) | (crc << 17)) + np.uint32(0xA282EAD8)  # wraps mod 2**32


def write_records(path: str | Path, datas: list[bytes]) -> None:
    """Write `datas` as TFRecords with correct CRCs (for tests and benchmarks)."""
    crcs = [0] * len(datas)
    by_len: dict[int, list[int]] = {}
    for i, d in enumerate(datas):
        by_len.setdefault(len(d), []).append(i)
    for n, idx in by_len.items():
        rows = np.frombuffer(b"".join(datas[i] for i in idx), dtype=np.uint8).reshape(len(idx), n)
        for i, c in zip(idx, _masked_crc_rows(rows).tolist()):
            crcs[i] = c
    head = {n: struct.pack("<QI", n, masked_crc32c(_U64.pack(n))) for n in by_len}
    with open(path, "wb") as f:
        f.write(b"".join(b"".join((head[len(d)], d, struct.pack("<I", c)))
                         for d, c in zip(datas, crcs)))


def _windows(a: np.ndarray, width: int) -> np.ndarray:
    """Row i is a[i:i+width]; gathering rows at many offsets is one fast numpy copy."""
    return as_strided(a, shape=(len(a) - width + 1, width), strides=(1, 1), writeable=False)


@dataclass
class EventFileScalars:
    """Scalars of one event file, in file order; `seq` numbers the file's records.
    `texts`: the text summaries, (tag, step, text, seq), in file order."""
    tags: list[str] = field(default_factory=list)  # tag id -> name
    tag_id: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    step: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    value: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float64))
    seq: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    purges: list[tuple[int, int]] = field(default_factory=list)  # (seq, step) of restarts
    texts: list[tuple[str, int, str, int]] = field(default_factory=list)
    records: int = 0
    problems: list[str] = field(default_factory=list)


_SHORT_HEADER_CRCS: np.ndarray | None = None  # masked CRC of every length < 65536


def _short_header_crcs() -> np.ndarray:
    global _SHORT_HEADER_CRCS
    if _SHORT_HEADER_CRCS is None:
        n = np.arange(1 << 16, dtype="<u8")
        _SHORT_HEADER_CRCS = _masked_crc_rows(n.view(np.uint8).reshape(-1, 8))
    return _SHORT_HEADER_CRCS


def _likely_heads(a: np.ndarray, size: int) -> np.ndarray:
    """Every offset that holds a valid header of a record shorter than 64 KiB, found without
    a Python loop; a few may lie inside data by chance (the chain walk skips those)."""
    if size < _HEADER:
        return np.zeros(0, dtype=np.int64)
    zero = a[:size] == 0
    span = size - _HEADER + 1
    high_zero = zero[2:2 + span].copy()  # length bytes 2..7 are zero
    for k in range(3, 8):
        high_zero &= zero[k:k + span]
    at = np.flatnonzero(high_zero)
    length = a[at].astype(np.int64) | (a[at + 1].astype(np.int64) << 8)
    crc = _windows(a, 4)[at + 8].copy().view("<u4")[:, 0]
    return at[crc == _short_header_crcs()[length]]


def _frame(buf: memoryview, a: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, str, list[tuple[int, int, int]]]:
    """Data offsets and lengths of the whole records in `buf`; where reading stopped; why;
    and the stretches of records of one length, as (first record, count, stride).

    Records follow each other: a record's length says where the next one starts. Long
    stretches of one length (our sink's layout) are found from their headers alone
    (`repeats`); where records stop repeating, the likely heads are found in the whole
    buffer and chained in numpy. A Python step runs only where both fail (a record of
    64 KiB or more, or damage).
    """
    from trainvitals.analyze.repeats import same_length_run  # it builds on this module
    size, last = len(buf), len(buf) - _HEADER
    chains = None  # (heads, next heads, chain ends), found once records stop repeating
    pieces, runs, pos, damage, records, misses = [], [], 0, "", 0, 0
    while pos <= last:
        if chains is None:
            count, stride = same_length_run(a, pos, size)
            if count:
                runs.append((records, count, stride))
                pieces.append(pos + stride * np.arange(count, dtype=np.int64))
                records, pos, misses = records + count, pos + count * stride, 0
                continue
            misses += 1
            if misses > _MISSES:
                chains = _chains(a, size)
        if chains is not None:
            cand, nxt, breaks = chains
            k = int(np.searchsorted(cand, pos))
            if k < len(cand) and cand[k] == pos:
                b = int(np.searchsorted(breaks, k))
                end = int(breaks[b]) if b < len(breaks) else len(cand) - 1
                pieces.append(cand[k:end + 1])
                records, pos = records + end + 1 - k, int(nxt[end])
                continue
        n, crc = struct.unpack_from("<QI", buf, pos)
        if crc != masked_crc32c(bytes(buf[pos:pos + 8])):
            damage = "corrupt"
            break
        pieces.append(np.array([pos], dtype=np.int64))
        records, pos = records + 1, pos + n + _HEADER + _FOOTER
    at = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int64)
    lengths = _windows(a, 8)[at].copy().view("<u8")[:, 0].astype(np.int64)
    stop = min(pos, size)
    whole = int(np.searchsorted(at + _HEADER + _FOOTER + lengths, size, side="right"))
    if whole < len(at):
        damage, stop = damage or "incomplete", int(at[whole])
    elif not damage and stop < size:
        damage = "incomplete"  # fewer bytes left than a header
    return at[:whole] + _HEADER, lengths[:whole], stop, damage, _cut(runs, whole)


_MISSES = 8  # records in a row that start no stretch of one length before the general framing takes over


def _cut(runs: list[tuple[int, int, int]], records: int) -> list[tuple[int, int, int]]:
    """The stretches of one length within the first `records` records."""
    return [(lo, min(count, records - lo), stride) for lo, count, stride in runs if lo < records]


def _chains(a: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    cand = _likely_heads(a, size)
    length = a[cand].astype(np.int64) | (a[cand + 1].astype(np.int64) << 8)
    nxt = cand + _HEADER + _FOOTER + length
    return cand, nxt, np.flatnonzero(nxt[:-1] != cand[1:])  # a chain ends at each of the last


def _varints(a: np.ndarray, at: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode the varint starting at each offset: (value as int64, byte length, valid)."""
    w = _windows(a, 10)[at]
    ends = w < 0x80
    nbytes = ends.argmax(axis=1) + 1
    value = np.zeros(len(at), dtype=np.uint64)
    for k in range(int(nbytes.max(initial=0))):
        part = (w[:, k] & 0x7F).astype(np.uint64) << np.uint64(7 * k)
        value |= np.where(k < nbytes, part, np.uint64(0))
    return value.view(np.int64), nbytes, ends.any(axis=1)


def _decode_simple(a: np.ndarray, o: np.ndarray, n: np.ndarray):
    """Vectorised parse of `wall_time, [step], summary{value{tag, simple_value}...}` records:
    one value an event (`SummaryWriter.add_scalar`, HF's and Lightning's loggers) or many
    (our `TensorBoardSink`: every tag of a step in one event).

    Returns (matches, record, step, tag start, tag end, value): `matches` per record (rows
    where it is False are left to the protobuf parser), the rest per value, in file order.
    """
    e = o + n
    p = o + 9  # field 1 (0x09): 8-byte wall_time
    ok = a[o] == 0x09
    has_step = a[p] == 0x10  # field 2, varint
    step, nbytes, valid = _varints(a, p + 1)
    ok &= valid | ~has_step
    step = np.where(has_step, step, 0)
    s = np.where(has_step, p + 1 + nbytes, p)  # field 5 (0x2a): summary, a varint length
    size, nbytes, valid = _varints(a, s + 1)
    first = s + 1 + nbytes
    ok &= (a[s] == 0x2A) & valid & (first + size == e) & (size > 0)
    # value k of every record still open, one numpy pass per k: field 1 (0x0a) of the summary,
    # a one-byte length, then exactly tag (0x0a) and simple_value (0x15, float, last)
    rec = np.flatnonzero(ok)
    at, end = first[rec], e[rec]
    found: list[tuple[np.ndarray, ...]] = []
    while len(rec):
        vlen, tlen = a[at + 1].astype(np.int64), a[at + 3].astype(np.int64)
        good = (a[at] == 0x0A) & (vlen < 0x80) & (a[at + 2] == 0x0A) & (tlen < 0x80) & (vlen == tlen + 7)
        good &= a[at + 4 + tlen] == 0x15
        good &= at + 2 + vlen <= end
        ok[rec[~good]] = False
        rec, at, end, tlen = rec[good], at[good], end[good], tlen[good]
        found.append((rec, at + 4, at + 4 + tlen))
        at = at + 9 + tlen
        more = at < end
        rec, at, end = rec[more], at[more], end[more]
    if not found:
        empty = np.zeros(0, np.int64)
        return ok, empty, empty, empty, empty, np.zeros(0, np.float64)
    rec, t0, t1 = (np.concatenate(x) for x in zip(*found))
    keep = ok[rec]  # a record found bad at a later value goes to the parser whole
    order = np.argsort(rec[keep], kind="stable")  # file order: by record, then position
    rec, t0, t1 = rec[keep][order], t0[keep][order], t1[keep][order]
    value = _windows(a, 4)[t1 + 1].copy().view("<f4")[:, 0].astype(np.float64)
    return ok, rec, step[rec], t0, t1, value


def _tag_ids(buf: memoryview, a: np.ndarray, t0: np.ndarray, t1: np.ndarray,
             ids: dict[bytes, int]) -> np.ndarray:
    """Number the tags buf[t0:t1] (ids grows with new tags) without a Python loop per record:
    hash each tag's bytes as 64-bit words, then check every tag against its group's first."""
    out = np.empty(len(t0), dtype=np.int32)
    lengths = t1 - t0
    for length in np.unique(lengths).tolist():
        idx = np.flatnonzero(lengths == length)
        width = -(-length // 8) * 8
        rows = np.zeros((len(idx), max(width, 8)), dtype=np.uint8)
        rows[:, :length] = _windows(a, max(length, 1))[t0[idx]][:, :length]
        words = rows.view("<u8")
        key = words[:, 0].copy()
        for k in range(1, words.shape[1]):
            key = key * _HASH_MUL + words[:, k]  # wraps mod 2**64
        _, first, inv = np.unique(key, return_index=True, return_inverse=True)
        inv = inv.reshape(-1)
        if not np.array_equal(words, words[first[inv]]):  # a hash collision: exact fallback
            first, inv = _exact_groups(rows)
        starts = t0[idx[first]].tolist()
        gid = np.array([ids.setdefault(bytes(buf[s:s + length]), len(ids)) for s in starts], np.int32)
        out[idx] = gid[inv]
    return out


def _exact_groups(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    seen: dict[bytes, int] = {}
    inv = np.array([seen.setdefault(r.tobytes(), len(seen)) for r in rows], dtype=np.int64)
    member = np.zeros(len(seen), dtype=np.int64)
    member[inv] = np.arange(len(rows))  # any member will do: a group's rows are equal
    return member, inv


def _tensor_scalar(t) -> float | None:
    """The value of a one-element float tensor (new-style scalar summaries), else None."""
    kinds = {1: ("<f4", "float_val"), 2: ("<f8", "double_val"), 19: ("<f2", "half_val"),
             14: ("<u2", "half_val")}
    if t.dtype not in kinds or int(np.prod([d.size for d in t.tensor_shape.dim])) != 1:
        return None
    dtype, repeated = kinds[t.dtype]
    if t.tensor_content:
        raw = np.frombuffer(t.tensor_content[:np.dtype(dtype).itemsize], dtype=dtype)
    elif len(getattr(t, repeated)):
        raw = np.array(getattr(t, repeated)[:1])
        raw = raw.astype(np.uint16).view(dtype) if repeated == "half_val" else raw
    else:
        return None
    if t.dtype == 14:  # bfloat16: the high half of a float32
        return float((raw.astype(np.uint32) << 16).view(np.float32)[0])
    return float(raw[0])


class _Slow:
    """Records off the fast path, decoded one by one with the protobuf parser."""

    def __init__(self) -> None:
        self.parse = None  # the protobuf classes, imported at the first record (a second or so)
        self.plugin: dict[str, str] = {}  # tag -> plugin named by its first metadata
        self.rows: list[tuple[str, int, float, int]] = []
        self.texts: list[tuple[str, int, str, int]] = []
        self.purges: list[tuple[int, int]] = []
        self.undecodable = 0

    def add(self, data: bytes, seq: int) -> None:
        if self.parse is None:
            from google.protobuf.message import DecodeError
            from tensorboard.compat.proto.event_pb2 import Event, SessionLog
            self.parse, self.start, self.error = Event.FromString, SessionLog.START, DecodeError
        try:
            ev = self.parse(data)
        except (self.error, ValueError):
            self.undecodable += 1
            return
        what = ev.WhichOneof("what")
        if what == "session_log" and ev.session_log.status == self.start:
            self.purges.append((seq, ev.step))
        if what != "summary":
            return
        for v in ev.summary.value:
            plugin = self.plugin.setdefault(v.tag, v.metadata.plugin_data.plugin_name)
            kind = v.WhichOneof("value")
            if kind == "simple_value":
                self.rows.append((v.tag, ev.step, v.simple_value, seq))
            elif kind == "tensor" and plugin in ("", "scalars"):
                x = _tensor_scalar(v.tensor)
                if x is not None:
                    self.rows.append((v.tag, ev.step, x, seq))
            elif kind == "tensor" and plugin == "text" and v.tensor.string_val:
                # add_text: a string tensor of shape [1] (TensorBoard shows element 0 too)
                text = v.tensor.string_val[0].decode("utf-8", "replace")
                self.texts.append((v.tag, ev.step, text, seq))


def read_event_file(path: str | Path, check_crc: bool = False,
                    progress: Callable[[int], None] | None = None) -> EventFileScalars:
    """All scalars in one event file; damage is reported in `problems`, never raised.
    `progress(n)` is called after each chunk of n bytes is read."""
    from trainvitals.analyze.repeats import MIN_RUN, decode_run  # it builds on this module
    path = Path(path)
    out, slow = EventFileScalars(), _Slow()
    ids: dict[bytes, int] = {}
    parts: list[tuple[np.ndarray, ...]] = []
    damage, carry = "", b""
    space, dirty = np.zeros(0, dtype=np.uint8), 0  # `dirty`: bytes of `space` written so far
    with open(path, "rb") as f:
        while not damage:
            # read into the array the decoder scans (zeros after the data: `_PAD`), with the
            # bytes the previous chunk left (a record split at its end) in front; one array
            # reused, as fresh memory costs more to touch than the reading (nothing decoded keeps a view)
            if len(space) < len(carry) + CHUNK_BYTES + _PAD:
                space, dirty = np.zeros(len(carry) + CHUNK_BYTES + _PAD, dtype=np.uint8), 0
            a = space[:len(carry) + CHUNK_BYTES + _PAD]
            a[:len(carry)] = np.frombuffer(carry, dtype=np.uint8)
            got = f.readinto(memoryview(a)[len(carry):len(carry) + CHUNK_BYTES])
            end = len(carry) + got
            a[end:dirty] = 0  # what a longer chunk left behind
            dirty = max(dirty, end)
            if progress is not None and got:
                progress(got)
            if not got:
                damage = "incomplete" if carry else ""
                break
            buf = memoryview(a)[:len(carry) + got]  # the same bytes, sliced as bytes are
            o, n, stop, damage, runs = _frame(buf, a)
            if check_crc and len(o):
                bad = np.flatnonzero(~_data_crc_ok(a, o, n))
                if bad.size:
                    o, n, damage, runs = o[:bad[0]], n[:bad[0]], "corrupt", _cut(runs, int(bad[0]))
            damage = "" if damage == "incomplete" else damage  # read on: maybe chunk border
            carry = bytes(buf[stop:])
            seq = out.records + np.arange(len(o), dtype=np.int64)
            done = 0  # records decoded, in file order: stretches of one layout, the rest in between
            for lo, count, stride in [*runs, (len(o), 0, 0)]:
                if lo > done:
                    _decode_general(buf, a, o[done:lo], n[done:lo], seq[done:lo], ids, parts, slow)
                done, end = lo, lo + count
                while done < end:
                    decoded, got = decode_run(buf, a, int(o[done]), end - done, stride, ids)
                    if decoded:
                        tag_id, step, value, rec = got
                        parts.append((tag_id, step, value, seq[done + rec]))
                    # the record that broke the layout goes the general way; so does the rest
                    # of a stretch whose layout changes every few records
                    upto = min(done + decoded + 1, end) if decoded >= MIN_RUN else end
                    if upto > done + decoded:
                        _decode_general(buf, a, o[done + decoded:upto], n[done + decoded:upto],
                                        seq[done + decoded:upto], ids, parts, slow)
                    done = upto
            out.records += len(o)
    out.tags = [b.decode("utf-8", "replace") for b in ids]
    _merge_slow(out, slow, parts)
    if damage:
        why = "truncated" if damage == "incomplete" else "corrupt record"
        out.problems.append(f"{path.name}: {why} after {out.records} records")
    if slow.undecodable:
        out.problems.append(f"{path.name}: {slow.undecodable} records are not Event protobufs")
    return out


def _decode_general(buf: memoryview, a: np.ndarray, o: np.ndarray, n: np.ndarray, seq: np.ndarray,
                    ids: dict[bytes, int], parts: list, slow: _Slow) -> None:
    ok, rec, step, t0, t1, value = _decode_simple(a, o, n)
    parts.append((_tag_ids(buf, a, t0, t1, ids), step, value, seq[rec]))
    for i in np.flatnonzero(~ok).tolist():
        slow.add(bytes(buf[o[i]:o[i] + n[i]]), int(seq[i]))


def _merge_slow(out: EventFileScalars, slow: _Slow, parts: list) -> None:
    rows = slow.rows
    if rows:
        lookup = {name: i for i, name in reversed(list(enumerate(out.tags)))}
        for tag, _, _, _ in rows:
            if tag not in lookup:
                lookup[tag] = len(out.tags)
                out.tags.append(tag)
        parts.append((np.array([lookup[r[0]] for r in rows], np.int32),
                      np.array([r[1] for r in rows], np.int64),
                      np.array([r[2] for r in rows], np.float64),
                      np.array([r[3] for r in rows], np.int64)))
    if parts:
        cols = [list(c) for c in zip(*parts)]
        parts.clear()
        merged = []
        for c in cols:  # one column at a time: memory holds at most one column twice
            merged.append(np.concatenate(c) if len(c) > 1 else c[0])
            c.clear()
        tag_id, step, value, seq = merged
        if rows:  # the parser's rows go back into file order
            order = np.argsort(seq, kind="stable")
            tag_id, step, value, seq = tag_id[order], step[order], value[order], seq[order]
        out.tag_id, out.step, out.value, out.seq = tag_id, step, value, seq
    out.purges = slow.purges
    out.texts = slow.texts


def _data_crc_ok(a: np.ndarray, o: np.ndarray, n: np.ndarray) -> np.ndarray:
    ok = np.ones(len(o), dtype=bool)
    for length in np.unique(n).tolist():
        idx = np.flatnonzero(n == length)
        rows = _windows(a, length + _FOOTER)[o[idx]]
        stored = rows[:, length:].copy().view("<u4")[:, 0]
        ok[idx] = _masked_crc_rows(rows[:, :length]) == stored
    return ok
