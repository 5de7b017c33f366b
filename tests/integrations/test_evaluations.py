"""Evaluations every N steps in the framework hosts, with the real libraries: HF
`eval_strategy="steps"` and Lightning's mid-epoch `val_check_interval`. Runs that overfit
are told so at the evaluation after the val loss was best, then alerted once it stays
well above it; `analyze` of the run's log says the same."""
import math

import pytest
import torch

transformers = pytest.importorskip("transformers")
L = pytest.importorskip("lightning.pytorch")
from pydoc_data.topics import topics  # noqa: E402
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments  # noqa: E402

from trainvitals.analyze.readers import read_run  # noqa: E402
from trainvitals.analyze.replay import AnalyzeConfig, replay  # noqa: E402
from trainvitals.analyze.roles import apply_roles  # noqa: E402
from trainvitals.integrations.lightning import TrainvitalsCallback as LightningCallback  # noqa: E402
from trainvitals.integrations.transformers import TrainvitalsCallback  # noqa: E402
from trainvitals.tasks.lm.model import GPT, GPTConfig  # noqa: E402

BLOCK, EVAL_STEPS, STEPS = 32, 5, 80


def _text_rows(text: bytes, stride: int):
    t = torch.tensor(list(text))
    return [{"input_ids": t[i:i + BLOCK], "labels": t[i:i + BLOCK]} for i in range(0, len(t) - BLOCK, stride)]


def _hf_trainer(out, callback, steps=STEPS, **kw):
    """A byte-level GPT-2 (2 layers, 64 wide) on 300 bytes of text, evaluated on 1200
    others: its val loss is best around step 20, then climbs while train falls."""
    text = topics["assignment"].encode()
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=64, n_head=2, vocab_size=256, n_positions=BLOCK,
                                       bos_token_id=0, eos_token_id=0))
    settings = dict(eval_strategy="steps", eval_steps=EVAL_STEPS, logging_steps=EVAL_STEPS)
    settings.update(kw)
    args = TrainingArguments(str(out), max_steps=steps, per_device_train_batch_size=16, learning_rate=3e-3,
                             report_to=["tensorboard"], use_cpu=True, save_strategy="no", disable_tqdm=True,
                             lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0, **settings)
    return Trainer(model=model, args=args, train_dataset=_text_rows(text[:300], 8),
                   eval_dataset=_text_rows(text[3000:4200], BLOCK), callbacks=[callback])


def _found(events):
    return [(e.kind, e.severity, e.step, e.epoch) for e in events if e.source == "evaluation"]


@pytest.fixture(scope="module")
def hf_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("hf")
    cb = TrainvitalsCallback()
    trainer = _hf_trainer(out, cb)
    trainer.train()
    live = list(cb.events)
    trainer.evaluate()  # as run_clm.py does, after train(): at the step of the last evaluation
    (run_dir,) = (out / "runs").iterdir()
    return cb, live, run_dir, trainer


def test_hf_evaluations_every_n_steps_find_overfitting_then_alert(hf_run, capsys):
    cb, live, run_dir, trainer = hf_run
    hf_val = {h["step"]: h["eval_loss"] for h in trainer.state.log_history if "eval_loss" in h}
    steps = sorted(hf_val)[:-1]  # the last is evaluate() after train(), at the same step
    best = min(steps, key=hf_val.get)
    found = _found(live)
    assert ("overfitting", "warning", best + EVAL_STEPS) == next(f[:3] for f in found if f[0] == "overfitting")
    above = [s for s in steps if s > best and hf_val[s] > 1.1 * hf_val[best]]
    alerts = [f for f in found if f[1] == "alert"]
    assert [(k, s) for k, _, s, _ in alerts] == [("val_loss_above_best", above[2])]
    # events carry HF's epoch (whole; the fraction in values); the report names it as HF does
    epochs = {h["step"]: h["epoch"] for h in trainer.state.log_history if "eval_loss" in h}
    event = next(e for e in live if e.kind == "overfitting")
    assert event.epoch == math.floor(epochs[event.step]) and event.values["epoch"] == round(epochs[event.step], 2)


def test_hf_analyze_of_the_log_finds_what_the_live_run_found(hf_run):
    cb, live, run_dir, _ = hf_run
    run = read_run(run_dir)
    assert _found(replay(apply_roles(run), AnalyzeConfig()).events) == _found(live)
    # HF's own tags alone (eval/loss, train/loss, train/epoch), as from a run without our callback
    hf_only = {t: v for t, v in run.series.items() if t.startswith(("train/", "eval/"))
               and t not in ("train/step_loss", "train/step_loss_ema", "train/epoch_loss", "train/lr")}
    from_hf = replay(apply_roles(type(run)(run.name, hf_only)), AnalyzeConfig()).events
    assert [f for f in _found(from_hf) if f[1] != "info"][:2] == [f for f in _found(live) if f[1] != "info"][:2]


def test_hf_evaluate_after_train_adds_no_nan_and_no_duplicate(hf_run):
    cb, live, run_dir, _ = hf_run
    s = read_run(run_dir).series
    val_steps = [step for step, _ in s["val/loss"]]
    assert val_steps == list(range(EVAL_STEPS, STEPS + 1, EVAL_STEPS))  # once each, the last one too
    assert "train/epoch_loss" not in s or all(math.isfinite(v) for _, v in s["train/epoch_loss"])
    assert cb.events == live  # nothing new: the same weights at the same step
    assert cb.saved_state["evaluations"] == STEPS // EVAL_STEPS


def test_hf_evaluate_after_train_without_eval_steps_is_the_runs_one_evaluation(tmp_path):
    cb = TrainvitalsCallback()
    trainer = _hf_trainer(tmp_path, cb, steps=12, eval_strategy="no", logging_steps=1)
    trainer.train()
    trainer.evaluate()
    (run_dir,) = (tmp_path / "runs").iterdir()
    s = read_run(run_dir).series
    assert [step for step, _ in s["val/loss"]] == [12]
    assert all(math.isfinite(v) for _, v in s["evaluation/train_loss"])
    assert cb.monitor.run_info["max_steps"] == 12 and "epochs" not in cb.monitor.run_info
    assert cb.monitor.run_info["host"] == "hf"


class _Memorizer(L.LightningModule):
    """A tiny LM on 2 batches of 4 sequences (16 symbols), repeated 15 times an epoch."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.gpt = GPT(GPTConfig(vocab_size=64, block_size=16, n_layers=2, n_heads=2, d_model=32))

    def _loss(self, batch):
        x, y = batch
        return torch.nn.functional.cross_entropy(self.gpt(x).flatten(0, 1), y.flatten())

    def training_step(self, batch, i):
        return self._loss(batch)

    def validation_step(self, batch, i):
        self.log("val_loss", self._loss(batch))

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=6e-3, weight_decay=0.0)


def test_lightning_val_check_interval_evaluates_mid_epoch(tmp_path, capsys):
    tokens = torch.randint(0, 16, (10, 17), generator=torch.Generator().manual_seed(0))
    train = [(tokens[i:i + 4, :-1], tokens[i:i + 4, 1:]) for i in (0, 4)] * 15
    val = [(tokens[8:, :-1], tokens[8:, 1:])]
    cb = LightningCallback()
    trainer = L.Trainer(max_epochs=2, val_check_interval=3, callbacks=[cb], default_root_dir=str(tmp_path),
                        accelerator="cpu", enable_progress_bar=False, enable_model_summary=False,
                        enable_checkpointing=False, log_every_n_steps=1, num_sanity_val_steps=0)
    loader = lambda data: torch.utils.data.DataLoader(data, batch_size=None)  # noqa: E731
    trainer.fit(_Memorizer(), loader(train), loader(val))
    s = read_run(trainer.logger.log_dir).series
    evaluated = [step for step, _ in s["evaluation/train_loss"]]
    assert evaluated == list(range(3, 61, 3))  # every validation: 10 an epoch of 30 steps
    assert [step for step, _ in s["train/epoch_loss"]] == [30, 60]
    val = dict(s["val/loss"])
    best = min(val, key=val.get)
    found = _found(cb.events)
    assert ("overfitting", "warning", best + 3, 0) in found  # the validation after the best, mid-epoch 0
    assert ("val_loss_above_best", "alert") in {f[:2] for f in found}
    # named as Lightning names them: the 3rd validation is at step 9 of epoch 0
    assert "POST-EPOCH EVALUATION (evaluation 3, step 9, epoch 0)" in capsys.readouterr().out
    assert _found(replay(read_run(trainer.logger.log_dir), AnalyzeConfig()).events) == found
