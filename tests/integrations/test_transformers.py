"""The HF callback on a real GPT-2 built from a config: block discovery on
`transformer.h` (whose blocks return tuples), HF's own figures as the reference, and
detector state surviving HF's checkpoint resume."""
import json

import pytest
import torch

transformers = pytest.importorskip("transformers")
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments  # noqa: E402

from trainvitals.analyze.readers import read_run  # noqa: E402
from trainvitals.errors import ConfigError  # noqa: E402
from trainvitals.integrations.transformers import TrainvitalsCallback  # noqa: E402
from trainvitals.monitor.config import MonitorConfig  # noqa: E402
from trainvitals.monitor.monitor import Monitor  # noqa: E402
from trainvitals.probes.gradient_flow import find_blocks  # noqa: E402
from trainvitals.sinks.base import SinkHub  # noqa: E402
from hosts import Memory  # noqa: E402

CONFIG = dict(n_layer=3, n_embd=32, n_head=2, vocab_size=64, n_positions=32, bos_token_id=0, eos_token_id=0)


def gpt2():
    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(**CONFIG))


def data(n=96):
    tokens = torch.randint(0, 64, (n, 16), generator=torch.Generator().manual_seed(0))
    return [{"input_ids": t, "labels": t} for t in tokens]


def train(out, callback, steps, **kw):
    args = TrainingArguments(str(out), max_steps=steps, per_device_train_batch_size=8, logging_steps=1,
                             report_to=["tensorboard"], use_cpu=True, learning_rate=1e-3, disable_tqdm=True,
                             save_strategy="steps", save_steps=6, lr_scheduler_type="constant", **kw)
    trainer = Trainer(model=gpt2(), args=args, train_dataset=data(), callbacks=[callback])
    return trainer, args


def test_gpt2_blocks_are_found_and_measured_in_a_plain_loop():
    model = gpt2()
    assert [name for name, _ in find_blocks(model)] == ["transformer.0", "transformer.1", "transformer.2"]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    mem = Memory()
    monitor = Monitor(model, opt, MonitorConfig(log_every=1), sinks=SinkHub([mem]))
    batch = torch.stack([b["input_ids"] for b in data(8)])
    out = model(input_ids=batch, labels=batch)
    out.loss.backward()
    monitor.after_backward()
    opt.step()
    monitor.step_end(out.loss)
    gains = {t: v for t, [(step, v)] in mem.scalars.items() if t.startswith("gradient_monitor/gain/")}
    assert sorted(gains) == [f"gradient_monitor/gain/transformer.{i}" for i in range(3)]
    assert all(0.01 < g < 100 for g in gains.values())
    assert mem.scalars["train/step_loss"] == [(1, pytest.approx(out.loss.item()))]


def test_hf_run_logs_our_tags_beside_hf_own_with_equal_values(tmp_path):
    cb = TrainvitalsCallback()
    trainer, _ = train(tmp_path, cb, 12)
    trainer.train()
    (run_dir,) = (tmp_path / "runs").iterdir()
    s = read_run(run_dir).series
    for block in ("transformer.0", "transformer.1", "transformer.2"):
        gains = [v for _, v in s[f"gradient_monitor/gain/{block}"]]
        assert len(gains) == 4 and all(0.01 < g < 100 for g in gains)  # steps 1, 4, 7, 10
    # HF's own figures are the reference: its logged step loss, and its pre-clip grad norm
    assert [st for st, _ in s["train/step_loss"]] == [st for st, _ in s["train/loss"]] == list(range(1, 13))
    assert [v for _, v in s["train/step_loss"]] == pytest.approx([v for _, v in s["train/loss"]], rel=1e-6)
    hf_norm = dict(s["train/grad_norm"])
    ours = s["gradient_monitor/grad_norm"]
    assert [v for _, v in ours] == pytest.approx([hf_norm[st] for st, _ in ours], rel=1e-5)
    assert any(v > 1.0 for v in hf_norm.values()), "some steps were clipped: the norm is taken before clipping"
    assert "train/step_loss_ema" in s and "weight_monitor/frozen_params" in s
    assert cb.events == [] or all(e.severity != "alert" for e in cb.events)


def test_detector_state_survives_hf_checkpoint_resume(tmp_path):
    straight = TrainvitalsCallback()
    trainer, _ = train(tmp_path / "a", straight, 12)
    trainer.train()
    ema_straight = straight.saved_state["loss"]["ema"]["value"]

    first = TrainvitalsCallback()
    trainer, _ = train(tmp_path / "b", first, 12)
    trainer.args.max_steps = 6  # stop at the checkpoint, as a crash would (constant LR: same steps)
    trainer.train()
    saved = json.loads((tmp_path / "b" / "checkpoint-6" / "trainer_state.json").read_text())
    assert saved["stateful_callbacks"]["TrainvitalsCallback"]["attributes"]["saved_state"]["step"] == 6
    resumed_cb = TrainvitalsCallback()
    trainer, _ = train(tmp_path / "b", resumed_cb, 12, restore_callback_states_from_checkpoint=True)
    trainer.train(resume_from_checkpoint=str(tmp_path / "b" / "checkpoint-6"))
    restored = next(cb for cb in trainer.callback_handler.callbacks if isinstance(cb, TrainvitalsCallback))
    assert restored.saved_state["step"] == 12
    # the EMA carried over the resume: 12 steps folded in, as in the uninterrupted run
    assert restored.saved_state["loss"]["ema"]["value"] == pytest.approx(ema_straight, rel=1e-6)


def test_skip_step_is_refused_with_the_alternatives():
    with pytest.raises(ConfigError, match="skip_step.*'stop' or 'warn'"):
        TrainvitalsCallback(MonitorConfig(on_nonfinite_loss="skip_step"))


def test_no_argument_callback_has_the_one_config_defaults():
    assert TrainvitalsCallback().config == MonitorConfig()


@pytest.mark.parametrize("warmup, steps", [(0.25, 2), (3, 3), (0, None)])
def test_warmup_is_the_steps_hf_schedules(tmp_path, warmup, steps):
    """A warmup given as a share of the run is turned into steps, as HF's scheduler does,
    so advice can say "in warmup" and analyze reads the same figure."""
    cb = TrainvitalsCallback()
    trainer, args = train(tmp_path, cb, 8, warmup_steps=warmup)
    trainer.train()
    assert cb.monitor.run_info.get("warmup_steps") == steps
    assert args.get_warmup_steps(8) == (steps or 0)
