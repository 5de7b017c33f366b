"""The auto_adjust benchmark's mechanics (`benchmarks/auto_adjust.py --quick`): a run
with a bad stretch of data, as is, with auto_adjust and with OLMo's skip rule, beside its
healthy twins. The rescue rate itself is the full benchmark's (docs/auto_adjust.md)."""
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import auto_adjust  # noqa: E402


def test_quick_benchmark_rolls_back_the_faulty_run_and_leaves_the_healthy_ones(tmp_path, capsys):
    out = tmp_path / "result.json"
    assert auto_adjust.main(["--quick", "--workdir", str(tmp_path), "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    runs = {r["mode"]: r for r in result["failing"]}
    assert set(runs) == {"off", "auto", "olmo"}
    (first, *_) = runs["auto"]["rollbacks"]
    assert first["trigger_step"] >= 70 and first["restored_step"] < 70  # back before the bad stretch began
    assert runs["auto"]["skipped"] >= first["skipped_steps"][1] - first["skipped_steps"][0] + 1
    assert runs["off"]["rollbacks"] == [] and runs["olmo"]["olmo_skipped"] > 0  # OLMo skips the bad batches
    assert all(r["rollback_actions"] == [] for r in result["healthy"])  # a healthy run is never rolled back
    assert all(isinstance(x, bool) for xs in result["rescued"].values() for x in xs)
    assert "rescued" in capsys.readouterr().out
