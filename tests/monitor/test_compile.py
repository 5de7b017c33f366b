"""A monitored model under torch.compile compiles as it would unmonitored (STYLE.md habit 17).

A counting backend (`tiny_models.CountingBackend`) counts, step by step, the ops that ran
inside compiled graphs: the model's own, and the gauges the probe adds. Monitored and bare
runs must run the same model ops compiled on every step, with no graph break and no
second compilation when measured and unmeasured steps alternate.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch._dynamo
from torch._dynamo.utils import counters
from tiny_models import CountingBackend, KwargBlocksGPT, Memory, NanoGPT, batches

from trainvitals import Monitor, MonitorConfig
from trainvitals.sinks.base import SinkHub

pytestmark = pytest.mark.filterwarnings("error:gradient gains not measured")


def train(make_model, steps: int, interval: int | None, backend: CountingBackend | None = None,
          micro_batches: int = 1) -> dict:
    """A nanoGPT-style loop; `interval` None: no monitor. Per step: (model ops, probe ops) run
    compiled; the logged scalars; the losses."""
    torch._dynamo.reset()
    counters.clear()
    torch.manual_seed(0)
    raw = make_model()
    optimizer = torch.optim.AdamW(raw.parameters(), lr=1e-2)
    model = torch.compile(raw, backend=backend) if backend is not None else raw
    sink = Memory()
    monitor = Monitor(model, optimizer, MonitorConfig(gradient_monitor_interval=interval, log_every=2),
                      sinks=SinkHub([sink])) if interval else None
    data = iter(batches(steps * micro_batches))
    per_step, losses = [], []
    for _ in range(steps):
        before = (backend.model_ops, backend.probe_ops) if backend else (0, 0)
        for _ in range(micro_batches):
            idx, targets = next(data)
            _, loss = model(idx, targets)
            (loss / micro_batches).backward()
        if monitor is not None:
            monitor.after_backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if monitor is not None:
            monitor.step_end(loss.detach())
        losses.append(loss.item())
        if backend:
            per_step.append((backend.model_ops - before[0], backend.probe_ops - before[1]))
    if monitor is not None:
        monitor.close()
    return {"per_step": per_step, "scalars": sink.scalars, "losses": losses, "monitor": monitor, "raw": raw,
            "graph_breaks": sum(counters["graph_break"].values()), "graphs": backend.graphs if backend else 0}


@pytest.mark.parametrize("make_model, interval", [(NanoGPT, 1), (NanoGPT, 3), (KwargBlocksGPT, 3)])
def test_monitoring_leaves_the_compiled_graphs_as_they_are(make_model, interval):
    bare = train(make_model, 4, None, CountingBackend())
    monitored = train(make_model, 4, interval, CountingBackend())
    assert bare["graph_breaks"] == 0 and bare["graphs"] == 1
    assert monitored["graph_breaks"] == 0
    assert monitored["graphs"] == 1  # measured and unmeasured steps run the same compiled graph
    assert [m for m, _ in monitored["per_step"]] == [m for m, _ in bare["per_step"]]
    assert all(p > 0 for _, p in monitored["per_step"])  # the gauges are in that graph
    gains = {tag: v for tag, v in monitored["scalars"].items() if tag.startswith("gradient_monitor/gain/")}
    assert len(gains) == 3
    measured = [1, 4] if interval == 3 else [1, 2, 3, 4]
    for series in gains.values():
        assert [s for s, _ in series] == measured
        assert all(math.isfinite(g) and g > 0 for _, g in series)


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-9)


def test_compiled_gains_equal_eager_and_tags_name_the_model_not_the_wrapper():
    eager = train(NanoGPT, 3, 2)
    compiled = train(NanoGPT, 3, 2, CountingBackend("aot_eager"))  # AOTAutograd traces the backward
    assert compiled["graph_breaks"] == 0 and compiled["graphs"] == 1
    tags = set(compiled["scalars"])
    assert tags == set(eager["scalars"])
    assert not [t for t in tags if "_orig_mod" in t]
    assert {"gradient_monitor/gain/transformer.0", "gradient_monitor/gain/transformer.2",
            "gradient_monitor/grad_norm/transformer.wte", "gradient_monitor/grad_norm/transformer.1"} <= tags
    checked = [t for t in tags if t.startswith(("gradient_monitor/", "weight_monitor/update_ratio"))]
    assert "gradient_monitor/grad_norm" in checked
    for tag in checked:
        for (s1, v1), (s2, v2) in zip(eager["scalars"][tag], compiled["scalars"][tag], strict=True):
            assert s1 == s2 and _close(v1, v2), (tag, s1, v1, v2)


def test_micro_batches_under_compile_pool_each_blocks_calls():
    """Two micro-batches a step: one compiled graph for both; a block's gain is that of the
    step's whole batch, sqrt(sum ||dL/dx||^2 / sum ||dL/dy||^2), computed here by tensor hooks
    on an eager copy."""
    compiled = train(NanoGPT, 1, 1, CountingBackend(), micro_batches=2)
    assert compiled["graph_breaks"] == 0 and compiled["graphs"] == 1

    torch.manual_seed(0)
    model = NanoGPT()
    sums = [[0.0, 0.0] for _ in model.transformer.h]

    def watch(i: int, side: int):
        def store(grad):
            sums[i][side] += grad.double().square().sum().item()
        return store
    for i, block in enumerate(model.transformer.h):
        block.register_forward_pre_hook(lambda m, args, i=i: args[0].register_hook(watch(i, 0)) and None)
        block.register_forward_hook(lambda m, args, out, i=i: out.register_hook(watch(i, 1)) and None)
    for idx, targets in batches(2):
        (model(idx, targets)[1] / 2).backward()
    for i, (x, y) in enumerate(sums):
        (step, gain), = compiled["scalars"][f"gradient_monitor/gain/transformer.{i}"]
        assert step == 1 and _close(gain, math.sqrt(x / y))


@pytest.mark.parametrize("compiled", [False, True])
def test_block_hooks_between_measured_steps(compiled):
    """Eager: hooked only for a measured step. Compiled: hooked until close(), since
    Dynamo would not see hooks come back (and re-adding them would recompile)."""
    torch._dynamo.reset()
    raw = NanoGPT()
    model = torch.compile(raw, backend=CountingBackend()) if compiled else raw
    monitor = Monitor(model, None, MonitorConfig(gradient_monitor_interval=3), sinks=SinkHub())
    hooked = lambda: all(b._forward_hooks and b._forward_pre_hooks for b in raw.transformer.h)  # noqa: E731
    assert hooked()
    idx, targets = batches(1)[0]
    model(idx, targets)[1].backward()
    monitor.after_backward()
    monitor.step_end(0.0)  # step 2 is not measured
    assert hooked() == compiled
    monitor.close()
    assert not any(b._forward_hooks or b._forward_pre_hooks for b in raw.transformer.h)


def test_block_without_input_gradient_is_unmeasured_not_zero():
    """Frozen embeddings: block 0's input carries no gradient. Its gain is NaN, and the
    aggregates are over the measured blocks, as in eager."""
    from trainvitals.probes.gradient_flow import GradientFlowProbe
    results = []
    for compiled in (False, True):
        torch._dynamo.reset()
        torch.manual_seed(0)
        raw = NanoGPT()
        for p in (raw.transformer.wte.weight, raw.transformer.wpe.weight):
            p.requires_grad_(False)
        probe = GradientFlowProbe(raw)
        model = torch.compile(raw, backend=CountingBackend()) if compiled else raw
        probe.attach()
        idx, targets = batches(1)[0]
        model(idx, targets)[1].backward()
        results.append(probe.collect().to_host())
        probe.close()
    eager, compiled = results
    assert math.isnan(compiled["gains"]["transformer.0"])
    for key in ("mean_gain", "max_gain", "amplification"):
        assert math.isfinite(compiled[key]) and _close(compiled[key], eager[key])


def test_a_model_compiled_before_the_monitor_is_reported_not_silently_unmeasured():
    """Dynamo does not guard on empty hook dicts: code compiled before the Monitor existed
    runs without its hooks. The gains cannot be measured: none is logged (no NaN), and the
    user is told why, once."""
    torch._dynamo.reset()
    raw = NanoGPT()
    model = torch.compile(raw, backend=CountingBackend())
    (idx, targets), *rest = batches(3)
    model(idx, targets)[1].backward()
    sink = Memory()
    monitor = Monitor(model, None, MonitorConfig(gradient_monitor_interval=1), sinks=SinkHub([sink]))
    with pytest.warns(UserWarning, match="make the Monitor first") as caught:
        for idx, targets in rest:
            model(idx, targets)[1].backward()
            monitor.after_backward()
            monitor.step_end(0.0)
    monitor.close()
    assert len([w for w in caught if "make the Monitor first" in str(w.message)]) == 1
    assert not any(tag.startswith("gradient_monitor/gain/") for tag in sink.scalars)
    assert all(math.isfinite(v) for points in sink.scalars.values() for _, v in points)
