"""auto_adjust under torchrun (2 CPU processes, gloo, DDP): a NaN loss on one rank is
seen by both in the reduced losses, so both roll back at the same step to the same
state and skip the same global batches, and their weights stay equal."""
import json
import math

from launch import HERE, torchrun

WORKER = str(HERE / "worker.py")


def test_every_rank_rolls_back_to_the_same_step_and_skips_the_same_batches(tmp_path):
    out = tmp_path / "roll.json"
    torchrun(WORKER, str(out), "--batch", "4", "--policy", "stop", "--auto-adjust", "--nan-rank", "1",
             "--nan-step", "5")
    ranks = [json.loads((tmp_path / f"roll.json.rank{r}.json").read_text()) for r in range(2)]
    assert ranks[0]["rollbacks"] == ranks[1]["rollbacks"]
    (r,) = ranks[0]["rollbacks"]
    # NaN at step 5 on rank 1, seen at the logging step 8 on both: back to step 4, batches 5-8 skipped
    assert (r["trigger_step"], r["restored_step"], r["skipped_steps"]) == (5, 4, [5, 8])
    assert [x["stopped_at"] for x in ranks] == [None, None]  # healed: both trained to the end
    assert ranks[0]["param_sum"] == ranks[1]["param_sum"] and math.isfinite(ranks[0]["param_sum"])
    assert ranks[0]["events"] == ranks[1]["events"]
