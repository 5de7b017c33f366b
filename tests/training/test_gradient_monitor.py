"""The gradient monitor inside the trainer: tags, frozen parameters, no syncs, no leftover hooks."""
import pytest
import torch
from test_loss_monitor import Memory

from trainvitals.config import TrainerConfig
from trainvitals.probes.sync_counter import count_host_syncs
from trainvitals.sinks.base import SinkHub
from trainvitals.tasks.lm.data import ByteCorpus, load_text
from trainvitals.tasks.lm.model import GPT, GPTConfig
from trainvitals.monitor.monitor import Monitor
from trainvitals.training.callbacks import TrainerCallback
from trainvitals.training.trainer import LanguageModelTrainer

MODEL = GPTConfig(n_layers=2, d_model=32, n_heads=2, block_size=32)


def trainer(optimizer_factory=None, callbacks=(), **cfg):
    torch.manual_seed(0)
    model = GPT(MODEL)
    config = TrainerConfig(**{"max_steps": 12, "epochs": 0, "batch_size": 4, "warmup_steps": 0, "lr": 1e-2,
                              "progress_bar": False, "gradient_monitor_interval": 2, "log_every": 4,
                              "enable_post_epoch_evaluation": False, **cfg})
    mem = Memory()
    opt = optimizer_factory(model) if optimizer_factory else None
    t = LanguageModelTrainer(model, config, optimizer=opt, callbacks=callbacks, sinks=SinkHub([mem]))
    return t, mem


def corpus():
    return ByteCorpus(load_text()[:40_000], MODEL.block_size, 4)


def test_tags_on_monitored_steps_including_the_first():
    t, mem = trainer()
    t.fit(corpus())
    assert [s for s, _ in mem.scalars["gradient_monitor/mean_gain"]] == [1, 3, 5, 7, 9, 11]
    for tag in ("gradient_monitor/gain/0", "gradient_monitor/gain/1", "gradient_monitor/grad_norm",
                "gradient_monitor/grad_norm/0", "gradient_monitor/grad_norm/tok_emb",
                "weight_monitor/frozen_params", "weight_monitor/update_ratio/0", "weight_monitor/update_ratio/head"):
        assert len(mem.scalars[tag]) == 6, tag
    # one tag per block and per module outside the blocks, not one per parameter
    groups = {t.rsplit("/", 1)[1] for t in mem.scalars if t.startswith("weight_monitor/update_ratio/")}
    assert groups == {"0", "1", "tok_emb", "pos_emb", "ln_f", "head"}
    gains = [v for _, v in mem.scalars["gradient_monitor/gain/1"]]
    assert all(0.1 < g < 10 for g in gains)


def test_parameter_left_out_of_the_optimizer_is_reported_frozen():
    def forgetful(model):  # block 1's MLP forgotten by mistake
        skip = {id(p) for p in model.blocks[1].mlp.parameters()}
        return torch.optim.AdamW([p for p in model.parameters() if id(p) not in skip], lr=1e-2)

    t, mem = trainer(forgetful, frozen_patience=3)
    t.model.pos_emb.weight.requires_grad_(False)  # intentional: listed, never alerted
    t.fit(corpus())
    frozen = [e for e in mem.events if e.kind == "frozen_parameters" and e.severity != "info"]
    assert len(frozen) == 1 and frozen[0].step == 5  # third monitored step
    assert set(frozen[0].values["params"]) == {"blocks.1.mlp.0.weight", "blocks.1.mlp.0.bias",
                                               "blocks.1.mlp.2.weight", "blocks.1.mlp.2.bias"}
    intentional = [e for e in mem.events if e.kind == "intentionally_frozen"]
    assert len(intentional) == 1 and intentional[0].severity == "info"
    assert "pos_emb.weight" in intentional[0].message
    assert not any("pos_emb" in str(e.values.get("params")) for e in frozen)


class SyncsPerStep(TrainerCallback):
    state_key = "syncs"

    def __init__(self):
        self.counts = {}

    def on_step_begin(self, ctx):
        self._ctx = count_host_syncs().__enter__()

    def on_step_end(self, ctx):
        self._ctx.__exit__(None, None, None)
        self.counts[ctx.global_step] = self._ctx.count


def test_no_host_sync_on_steps_that_do_not_log_and_one_on_those_that_do():
    probe = SyncsPerStep()
    # SGD: torch's Adam reads its own CPU step counter with .item(), which is not ours to count
    t, mem = trainer(lambda m: torch.optim.SGD(m.parameters(), lr=1e-2, momentum=0.9), callbacks=[probe],
                     gradient_monitor_interval=3, log_every=5)
    t.fit(corpus())
    assert len(probe.counts) == 12
    # monitored steps 1, 4, 7, 10 included; steps 5 and 10 log: losses, gains and updates cross in one transfer
    assert probe.counts == {s: int(s % 5 == 0) for s in range(1, 13)}, probe.counts
    assert [s for s, _ in mem.scalars["gradient_monitor/mean_gain"]] == [1, 4, 7, 10]


def test_hooks_are_gone_when_closed_and_after_training():
    t, _ = trainer()
    t.fit(corpus())
    blocks = list(t.model.blocks)
    assert all(not b._forward_hooks and not b._forward_pre_hooks for b in blocks)
    assert not t.optimizer._optimizer_step_pre_hooks and not t.optimizer._optimizer_step_post_hooks
    monitor = Monitor(t.model, t.optimizer)  # step 1 is monitored: hooks attached for it
    assert all(b._forward_hooks and b._forward_pre_hooks for b in blocks)
    monitor.close()
    assert all(not b._forward_hooks and not b._forward_pre_hooks for b in blocks)
    assert monitor.flow is None


def test_disabled_in_config_adds_no_hook():
    t, mem = trainer(enable_gradient_monitor=False)
    assert t.monitor.flow is None and not any(b._forward_pre_hooks for b in t.model.blocks)
    t.fit(corpus())
    assert not any(tag.startswith(("gradient_monitor/", "weight_monitor/")) for tag in mem.scalars)


def test_on_gain_alert_stop_and_reduce_lr():
    from trainvitals.training.callbacks import StopReason
    # a threshold just above 1 puts every monitored step over it; while the loss falls that is
    # a warning (signals/gain_gate.py), and nothing is acted on
    t, mem = trainer(mean_gain_absolute_threshold=1.0001, on_gain_alert="stop")
    assert t.fit(corpus()) is StopReason.COMPLETED
    assert [e.severity for e in mem.events if e.kind == "mean_gain_absolute"] == ["warning"]
    # at an LR too small to move the loss, the loss stalls: once 25 steps show it, an alert, and the run stops
    t, mem = trainer(mean_gain_absolute_threshold=1.0001, on_gain_alert="stop", lr=1e-7, max_steps=60)
    assert t.fit(corpus()) is StopReason.GAIN_ALERT
    alert = next(e for e in mem.events if e.kind == "mean_gain_absolute" and e.severity == "alert")
    assert 25 < alert.step < t.global_step <= alert.step + 4  # seen at the next logging step, then the stop
    assert any(e.kind == "action" and "stopping" in e.message for e in mem.events)

    t, mem = trainer(mean_gain_absolute_threshold=1.0001, on_gain_alert="reduce_lr",
                     lr_schedule="constant", lr=1e-7, max_steps=40)
    t.fit(corpus())
    actions = [e for e in mem.events if e.kind == "action"]
    assert len(actions) == 1 and "1.0e-07 → 5.0e-08" in actions[0].message
    lrs = dict(mem.scalars["train/lr"])
    assert lrs[1] == 1e-7 and lrs[40] == 5e-8


def test_infinite_drift_threshold_is_the_off_switch_for_drift():
    t, mem = trainer(mean_gain_drift_threshold=float("inf"), mean_gain_absolute_threshold=1.0001)
    t.fit(corpus())
    assert "gradient_monitor/mean_gain" in mem.scalars
    assert "gradient_monitor/mean_gain_ma" not in mem.scalars
    assert not [e for e in mem.events if e.kind.startswith("mean_gain")]


def test_max_gain_jump_factor_from_the_config_reaches_the_live_check():
    # any rise of the largest block gain over 1% of its median counts as a jump: it fires
    t, mem = trainer(max_gain_jump_factor=1.01, max_steps=30)
    t.fit(corpus())
    jumps = [e for e in mem.events if e.kind == "max_gain_jump"]
    assert jumps and all(e.values["factor"] == 1.01 for e in jumps)


def test_group_figures_equal_the_ones_computed_from_the_weights_and_gradients():
    class Capture(TrainerCallback):  # step 1: the gradients before the step, the weights around it
        def on_backward_end(self, ctx):
            if ctx.global_step == 0:
                self.before = {n: p.detach().clone() for n, p in ctx.model.named_parameters()}
                self.grads = {n: p.grad.detach().clone() for n, p in ctx.model.named_parameters()}

        def on_step_end(self, ctx):
            if ctx.global_step == 1:
                self.after = {n: p.detach().clone() for n, p in ctx.model.named_parameters()}

    cap = Capture()
    t, mem = trainer(callbacks=[cap], max_steps=2, gradient_clip=0.0)
    t.fit(corpus())
    block0 = [n for n in cap.before if n.startswith("blocks.0.")]
    dw = torch.linalg.vector_norm(torch.stack([(cap.after[n] - cap.before[n]).norm() for n in block0]))
    w = torch.linalg.vector_norm(torch.stack([cap.before[n].norm() for n in block0]))
    g = torch.linalg.vector_norm(torch.stack([cap.grads[n].norm() for n in block0]))
    assert dict(mem.scalars["weight_monitor/update_ratio/0"])[1] == pytest.approx(float(dw / w), rel=1e-4)
    assert dict(mem.scalars["gradient_monitor/grad_norm/0"])[1] == pytest.approx(float(g), rel=1e-5)


def test_per_parameter_ratio_tags_on_request():
    t, mem = trainer(log_per_param=True, max_steps=2)
    t.fit(corpus())
    assert "weight_monitor/update_ratio/blocks.0.attn.qkv.weight" in mem.scalars
    assert "weight_monitor/update_ratio/0" in mem.scalars


@pytest.mark.parametrize("per_param", [False, True])
def test_analyze_finds_frozen_parameters_from_either_form_of_the_tags(tmp_path, per_param):
    from trainvitals.analyze.readers import read_run
    from trainvitals.analyze.replay import AnalyzeConfig, replay
    from trainvitals.sinks.jsonl import JSONLSink

    def without_block_1(model):  # a whole block left out of the optimizer by mistake
        skip = {id(p) for p in model.blocks[1].parameters()}
        return torch.optim.AdamW([p for p in model.parameters() if id(p) not in skip], lr=1e-2)

    torch.manual_seed(0)
    model = GPT(MODEL)
    config = TrainerConfig(max_steps=12, epochs=0, batch_size=4, warmup_steps=0, progress_bar=False,
                           gradient_monitor_interval=2, log_per_param=per_param, enable_post_epoch_evaluation=False)
    t = LanguageModelTrainer(model, config, optimizer=without_block_1(model),
                             sinks=SinkHub([JSONLSink(tmp_path / "m.jsonl")]))
    t.fit(corpus())
    t.close()
    events = [e for e in replay(read_run(tmp_path / "m.jsonl"), AnalyzeConfig()).events
              if e.kind == "frozen_parameters" and e.severity != "info"]
    assert len(events) == 1 and events[0].step == 5
    named = set(events[0].values["params"])
    params = {n for n, _ in model.blocks[1].named_parameters(prefix="blocks.1")}
    # the default tags name the block; per-parameter tags name each parameter (and the block)
    assert named == (params | {"1"} if per_param else {"1"})
