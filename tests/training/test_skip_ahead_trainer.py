"""Our Trainer under auto_adjust with a stretch of bad data longer than one skip: each
rollback whose trouble came back right after the previous skip skips further past its
alert, the Trainer drops those batches unfed (across an epoch end too), the run ends
healthy, and a resume from the snapshot taken inside a skip goes on skipping the same
batches, as the uninterrupted run did."""
import json

import torch

from trainvitals.config import TrainerConfig
from trainvitals.sinks.base import SinkHub
from trainvitals.tasks.lm.data import ByteCorpus, load_text
from trainvitals.tasks.lm.model import GPT, GPTConfig
from trainvitals.training.trainer import LanguageModelTrainer

MODEL = GPTConfig(n_layers=2, d_model=16, n_heads=2, block_size=16)
BAD = range(13, 30)  # the batches of steps 13-29 give a NaN loss


class Stretch(LanguageModelTrainer):
    """Lists the steps it trained on; the batches of the steps in BAD are broken."""

    def compute_loss(self, batch):
        loss = super().compute_loss(batch)
        if not self.model.training:
            return loss
        step = self.global_step + 1
        self.fed.append(step)
        return loss * float("nan") if step in BAD else loss


def trainer(logdir):
    torch.manual_seed(0)
    cfg = TrainerConfig(epochs=3, steps_per_epoch=20, batch_size=4, lr=3e-3, warmup_steps=0, log_every=5,
                        auto_adjust=True, rollback_every=5, rollback_keep=3, progress_bar=False,
                        logdir=str(logdir), device="cpu")
    t = Stretch(GPT(MODEL), cfg, sinks=SinkHub())
    t.fed = []
    return t


def corpus():
    return ByteCorpus(load_text()[:20_000], MODEL.block_size, 4, 0.1, 0)


def test_a_bad_stretch_longer_than_one_skip_is_passed_and_a_resume_inside_a_skip_goes_on(tmp_path):
    data = corpus()
    t = trainer(tmp_path / "straight")
    assert t.fit(data, data).value == "completed"
    done = json.loads((tmp_path / "straight" / "rollbacks.json").read_text())["rollbacks"]
    # the skip of the rollback at step 20 reaches 5 steps past its alert, into epoch 2; the
    # next, at 30, 10 past it: beyond the stretch
    assert [(r["at_step"], r["skipped_steps"], r["skipped_ahead"]) for r in done] == [
        (15, [11, 15], 0), (20, [11, 25], 5), (30, [11, 40], 10)]
    assert t.fed == [s for s in range(1, 61) if not 21 <= s <= 25 and not 31 <= s <= 40]
    assert all(torch.isfinite(p).all() for p in t.module.parameters()) and t.global_step == 60
    assert t.last_val_loss is not None and t.last_val_loss < 5.0  # it learned after the stretch

    # resumed from the snapshot of step 20 (the epoch's end, inside the skip to 25)
    r = trainer(tmp_path / "split")
    r.load_snapshot(tmp_path / "straight" / "snapshots" / "step_0000020.pt")
    assert r.fit(data, data).value == "completed"
    assert r.fed == [s for s in t.fed if s > 20]  # 21-25 dropped, as in the run straight through
    assert [x["skipped_steps"][1] for x in r.monitor.rollback.done] == [15, 25, 40]
    assert [x["skipped_ahead"] for x in r.monitor.rollback.done] == [0, 5, 10]
