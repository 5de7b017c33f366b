"""The actionability benchmark's mechanics (`benchmarks/advice/actionability.py --quick`):
a failing run on each host gets advise's change, applied mechanically (our run from the
config `advise --out` wrote, HF's through the host table), rerun and scored. The rate
itself is the full benchmark's (docs/advice.md), not asserted here."""
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks" / "advice"))

import actionability  # noqa: E402

from trainvitals.cli_config import load_toml  # noqa: E402


def test_quick_benchmark_applies_the_advised_change_and_scores_the_rerun(tmp_path, capsys):
    out = tmp_path / "result.json"
    assert actionability.main(["--quick", "--workdir", str(tmp_path), "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    pairs = {r["scenario"]: r for r in result["pairs"]}
    assert set(pairs) == {"lm_lr_too_low", "hf_lr_too_low"}
    for r in pairs.values():
        change = r["advice"]["change"]
        assert set(change) == {"lr"} and change["lr"] > 1e-5  # an LR too low is raised, never cut
        rerun = r["trainvitals"]["rerun"]
        assert isinstance(rerun["val"], float) and rerun["val"] != r["base"]["val"]  # the rerun ran and was scored
        assert isinstance(r["trainvitals"]["fixed"], bool)
    # our rerun trained from the config advise --out wrote: the run's settings with the change
    (toml,) = (tmp_path / "runs").glob("lm_lr_too_low-*.next.toml")
    config = load_toml(str(toml))
    assert config["lr"] == pairs["lm_lr_too_low"]["advice"]["change"]["lr"]
    assert config["d_model"] == 32 and config["steps_per_epoch"] == 20 and config["seed"] == 0
    assert "| lm_lr_too_low |" in capsys.readouterr().out
