"""The Lightning callback with the real library: gradients before clipping under the
closure of automatic optimization, frozen parameters found there, accumulation, and
detector state surviving Lightning's checkpoint resume."""
import pytest
import torch

L = pytest.importorskip("lightning.pytorch")
from hosts import LR, batches, model  # noqa: E402

from trainvitals.analyze.readers import read_run  # noqa: E402
from trainvitals.integrations.lightning import TrainvitalsCallback  # noqa: E402
from trainvitals.monitor.config import MonitorConfig  # noqa: E402


class Module(L.LightningModule):
    def __init__(self, leave_out_block=None):
        super().__init__()
        self.model = model()
        self.leave_out = leave_out_block
        self.norms = {}  # step -> total grad norm seen by the module's own hook (after ours, before clipping)

    def training_step(self, batch, i):
        return self.model(**batch)["loss"]

    def on_before_optimizer_step(self, optimizer):
        norms = [p.grad.norm() for p in self.parameters() if p.grad is not None]
        self.norms[self.trainer.global_step + 1] = float(torch.linalg.vector_norm(torch.stack(norms)))

    def configure_optimizers(self):
        skip = set()
        if self.leave_out is not None:
            skip = {id(p) for p in self.model.gpt.blocks[self.leave_out].parameters()}
        return torch.optim.AdamW([p for p in self.parameters() if id(p) not in skip], lr=LR, weight_decay=0.0)


def fit(tmp_path, module, cb, steps=15, ckpt=None, **kw):
    trainer = L.Trainer(max_steps=steps, callbacks=[cb], default_root_dir=str(tmp_path), accelerator="cpu",
                        enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=1, **kw)
    trainer.fit(module, torch.utils.data.DataLoader(batches(), batch_size=None), ckpt_path=ckpt)
    return trainer


def test_grad_norm_is_taken_before_clipping_and_frozen_blocks_are_named(tmp_path):
    cb, module = TrainvitalsCallback(), Module(leave_out_block=1)
    trainer = fit(tmp_path, module, cb, gradient_clip_val=0.01, enable_checkpointing=False)
    s = read_run(trainer.logger.log_dir).series
    ours = s["gradient_monitor/grad_norm"]
    assert [st for st, _ in ours] == [1, 4, 7, 10, 13]
    assert [v for _, v in ours] == pytest.approx([module.norms[st] for st, _ in ours], rel=1e-5)
    assert all(v > 0.01 for _, v in ours), "measured before Lightning clipped to 0.01"
    frozen = [e for e in cb.events if e.kind == "frozen_parameters" and e.severity != "info"]
    assert len(frozen) == 1 and frozen[0].step == 7  # third monitored step (frozen_patience 3)
    assert frozen[0].values["params"] and all(p.startswith("model.gpt.blocks.1.") for p in frozen[0].values["params"])
    # the run's settings, once, where analyze reads them: advice replayed from this log names them
    settings = read_run(trainer.logger.log_dir).settings
    assert settings["lr"] == pytest.approx(LR) and settings["gradient_clip"] == pytest.approx(0.01)


def test_accumulation_sums_the_divided_micro_batch_losses(tmp_path):
    cb = TrainvitalsCallback(MonitorConfig(log_every=1))
    trainer = fit(tmp_path, Module(), cb, steps=4, accumulate_grad_batches=2, enable_checkpointing=False)
    s = read_run(trainer.logger.log_dir).series
    m = model()
    first = [m(**b)["loss"].item() for b in batches()[:2]]
    assert [st for st, _ in s["train/step_loss"]] == [1, 2, 3, 4]
    assert s["train/step_loss"][0][1] == pytest.approx(sum(first) / 2, rel=1e-5)


def test_detector_state_survives_a_checkpoint_resume(tmp_path):
    def run(root, cb, steps, ckpt=None, save=False):
        extra = [L.callbacks.ModelCheckpoint(dirpath=str(tmp_path / "ck"), save_top_k=-1)] if save else []
        trainer = L.Trainer(max_steps=steps, callbacks=[cb, *extra], default_root_dir=str(root),
                            accelerator="cpu", enable_progress_bar=False, enable_model_summary=False,
                            log_every_n_steps=1, enable_checkpointing=save)
        epoch = torch.utils.data.DataLoader(batches()[:6], batch_size=None)  # 6 steps an epoch
        trainer.fit(Module(), epoch, ckpt_path=ckpt)

    straight, first, resumed = TrainvitalsCallback(), TrainvitalsCallback(), TrainvitalsCallback()
    run(tmp_path / "a", straight, 12)
    run(tmp_path / "b", first, 6, save=True)  # stops after epoch 0, checkpointed there
    (path,) = (tmp_path / "ck").glob("*.ckpt")
    saved = torch.load(path, weights_only=False)["callbacks"]  # our own test file: Lightning's format
    assert saved[first.state_key]["monitor"]["step"] == 6
    run(tmp_path / "c", resumed, 12, ckpt=str(path))
    got, want = resumed.state_dict()["monitor"], straight.state_dict()["monitor"]
    # the detectors continued from the checkpoint: 12 losses in the EMA, 4 checks in the drift
    # window (steps 1, 4, 7, 10), not the 6 and 2 of a fresh start. (Lightning itself replays
    # the data differently after this resume, so the values are not compared.)
    assert got["step"] == want["step"] == 12
    assert got["loss"]["ema"]["count"] == want["loss"]["ema"]["count"] == 12
    assert got["gradients"]["signals"]["drift"]["count"] == want["gradients"]["signals"]["drift"]["count"] == 4


def test_steps_are_lightnings_own_on_a_checkpoint_written_without_the_callback(tmp_path):
    def run(root, callbacks, steps, ckpt=None):
        trainer = L.Trainer(max_steps=steps, callbacks=callbacks, default_root_dir=str(root), accelerator="cpu",
                            enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=1,
                            enable_checkpointing=ckpt is None)
        trainer.fit(Module(), torch.utils.data.DataLoader(batches()[:6], batch_size=None), ckpt_path=ckpt)
        return trainer

    run(tmp_path / "a", [L.callbacks.ModelCheckpoint(dirpath=str(tmp_path / "ck"))], 6)  # no trainvitals
    (path,) = (tmp_path / "ck").glob("*.ckpt")
    cb = TrainvitalsCallback(MonitorConfig(log_every=1))
    trainer = run(tmp_path / "b", [cb], 10, ckpt=str(path))
    steps = [st for st, _ in read_run(trainer.logger.log_dir).series["train/step_loss"]]
    assert steps == [7, 8, 9, 10]  # where Lightning logs them, not 1..4
