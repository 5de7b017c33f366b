"""`Monitor` in a plain loop under torchrun (2 CPU processes, gloo): global figures under
DDP and FSDP2, one collective per logging step, and decisions every rank takes together.

The reference is one process training on the same global batches (2x the rows)."""
import json
import math

import pytest
from launch import HERE, single, torchrun

WORKER = str(HERE / "worker.py")


def _run(tmp_path, name, *args, ranks=2):
    out = tmp_path / f"{name}.json"
    if ranks == 1:
        single(WORKER, str(out), *args)
    else:
        torchrun(WORKER, str(out), *args)
    return json.loads(out.read_text()), [json.loads((tmp_path / f"{name}.json.rank{r}.json").read_text())
                                         for r in range(ranks)]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("one"), "one", "--batch", "8", "--mode", "none", ranks=1)[0]


def _worst(a, b):
    """Largest relative difference per tag between two runs' logged scalars."""
    out = {}
    for tag, points in a["scalars"].items():
        other = dict((s, v) for s, v in b["scalars"][tag])
        assert [s for s, _ in points] == sorted(other), tag
        out[tag] = max(abs(v - other[s]) / max(abs(v), 1e-3) for s, v in points)
    return out


@pytest.mark.parametrize("mode", ["ddp", "fsdp"])
def test_two_ranks_log_what_one_process_with_twice_the_batch_logs(tmp_path, reference, mode):
    two, _ = _run(tmp_path, mode, "--batch", "4", "--mode", mode)
    assert set(two["scalars"]) == set(reference["scalars"])
    worst = _worst(reference, two)
    # losses are reduced means; gains come from summed squares, not averaged per-rank gains;
    # under FSDP2 grad norms and update ratios come from summed shard norms
    for tag in ("train/step_loss", "gradient_monitor/gain/0", "gradient_monitor/gain/2",
                "gradient_monitor/grad_norm", "gradient_monitor/grad_norm/1", "weight_monitor/update_ratio/1",
                "weight_monitor/update_ratio/tok_emb", "gradient_monitor/mean_gain"):
        assert worst[tag] < 1e-4, (tag, worst[tag])
    assert max(worst.values()) < 1e-3


def test_one_collective_per_logging_step_and_none_on_other_steps(tmp_path):
    two, _ = _run(tmp_path, "count", "--batch", "4", "--policy", "stop", "--interval", "3", "--log-every", "4")
    assert two["collectives_per_step"] == [0, 0, 0, 1] * 3


@pytest.mark.parametrize("policy,stopped", [("skip_step", None), ("stop", 8)])
def test_a_nonfinite_loss_on_one_rank_is_handled_on_every_rank(tmp_path, policy, stopped):
    _, ranks = _run(tmp_path, policy, "--batch", "4", "--policy", policy, "--nan-rank", "1", "--nan-step", "5")
    assert ranks[0]["events"] == ranks[1]["events"]
    assert ("nonfinite_loss", 5) in {(e["kind"], e["step"]) for e in ranks[0]["events"]}
    assert [r["stopped_at"] for r in ranks] == [stopped, stopped]  # at the same logging step
    if policy == "skip_step":  # both skipped step 5: the weights stayed finite and equal
        assert ranks[0]["param_sum"] == ranks[1]["param_sum"] and math.isfinite(ranks[0]["param_sum"])


def test_a_stop_asked_on_one_rank_stops_every_rank_at_the_next_logging_step(tmp_path):
    _, ranks = _run(tmp_path, "ask", "--batch", "4", "--policy", "stop", "--stop-rank", "1", "--stop-step", "5")
    assert [r["stopped_at"] for r in ranks] == [8, 8]
    assert [r["stop_reason"] for r in ranks] == ["interrupted", "interrupted"]
