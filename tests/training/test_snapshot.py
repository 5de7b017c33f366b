"""Snapshots: atomic writes, safe loads, clear errors."""
import pytest
import torch

from trainvitals.errors import SnapshotError
from trainvitals.training import snapshot as snap


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_crash_mid_write_keeps_previous_snapshot(tmp_path, monkeypatch):
    path = tmp_path / "step_0000001.pt"
    snap.atomic_save({"w": torch.ones(3)}, path)
    real_save = torch.save

    def dying_save(obj, f, *a, **k):
        f.write(b"PK\x03\x04 partial bytes")  # something lands on disk, then the process dies
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        snap.atomic_save({"w": torch.zeros(3)}, path)
    monkeypatch.setattr(torch, "save", real_save)
    assert torch.equal(snap.read_snapshot(path)["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == [path.name], "no temp file left behind"


def test_pickled_object_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": snap.FORMAT, "x": Evil()}, path)
    with pytest.raises(SnapshotError, match="refused"):
        snap.read_snapshot(path)


def test_truncated_foreign_and_missing_files(tmp_path):
    good = snap.atomic_save({"w": torch.randn(1000)}, tmp_path / "good.pt")
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[:-500])
    with pytest.raises(SnapshotError, match="unreadable"):
        snap.read_snapshot(cut)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(SnapshotError, match="not a trainvitals snapshot"):
        snap.read_snapshot(foreign)
    with pytest.raises(SnapshotError, match="no such file"):
        snap.read_snapshot(tmp_path / "nope.pt")


def test_keep_last_k(tmp_path):
    for step in range(1, 6):
        snap.atomic_save({"s": step}, tmp_path / f"step_{step:07d}.pt")
        snap.prune(tmp_path, keep=2)
    assert [s for s, _ in snap.list_snapshots(tmp_path)] == [4, 5]
    assert snap.read_snapshot(snap.latest_snapshot(tmp_path))["s"] == 5
