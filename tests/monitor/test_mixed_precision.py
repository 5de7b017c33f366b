"""The plain loop under bf16 autocast and fp16 with a GradScaler, as nanoGPT writes it:

    scaler = torch.amp.GradScaler(device_type, enabled=(dtype == "float16"))
    with autocast: loss = model(x, y)
    scaler.scale(loss).backward()
    [scaler.unscale_(optimizer)]          # only if it clips
    monitor.after_backward(grad_scale=scaler)
    scaler.step(optimizer); scaler.update()

The monitor's figures are those of the true gradients, it adds no host sync to a step
that does not log, and a step the scaler skips after an overflow raises no alert.
"""
from __future__ import annotations

import math

import torch
import torch._dynamo
from tiny_models import CountingBackend, Memory, NanoGPT, batches

from trainvitals import Monitor, MonitorConfig
from trainvitals.probes.sync_counter import count_host_syncs
from trainvitals.sinks.base import SinkHub


def run(dtype: torch.dtype, *, scaler_on: bool, pass_scaler: bool = True, unscale_first: bool = False,
        steps: int = 4, init_scale: float = 2.0 ** 16, backoff: float = 0.5,
        backend: CountingBackend | None = None) -> dict:
    """Per step: host syncs inside the monitor's calls, the true grad norm (measured by
    torch after unscaling, outside the count); the logged scalars; the events."""
    torch.manual_seed(0)
    model = NanoGPT()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    compiled = model
    if backend is not None:
        torch._dynamo.reset()
        compiled = torch.compile(model, backend=backend)
    scaler = torch.amp.GradScaler("cpu", enabled=scaler_on, init_scale=init_scale, backoff_factor=backoff)
    sink = Memory()
    monitor = Monitor(model, optimizer, MonitorConfig(gradient_monitor_interval=1, log_every=steps),
                      sinks=SinkHub([sink]))
    syncs, true_norms = [], []
    for idx, targets in batches(steps):
        with torch.autocast("cpu", dtype=dtype):
            _, loss = compiled(idx, targets)
        scaler.scale(loss).backward()
        if unscale_first:
            scaler.unscale_(optimizer)
        with count_host_syncs() as counted:
            monitor.after_backward(grad_scale=scaler if pass_scaler else None)
        if not unscale_first:
            scaler.unscale_(optimizer)
        true_norms.append(torch.nn.utils.get_total_norm([p.grad for p in model.parameters()]).item())
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        with count_host_syncs() as ended:
            monitor.step_end(loss.detach())
        syncs.append(counted.count + ended.count)
    monitor.close()
    return {"syncs": syncs, "true_norms": true_norms, "scalars": sink.scalars,
            "kinds": [e.kind for e in monitor.events]}


def _gains(scalars: dict) -> list[float]:
    return [v for tag in sorted(scalars) if tag.startswith("gradient_monitor/gain/") for _, v in scalars[tag]]


def test_fp16_with_grad_scaler_measures_the_true_gradients():
    """Whether or not unscale_() ran before after_backward(), the logged grad norm is the
    unscaled one and the gains are the same."""
    runs = [run(torch.float16, scaler_on=True, unscale_first=first) for first in (False, True)]
    for out in runs:
        logged = [v for _, v in out["scalars"]["gradient_monitor/grad_norm"]]
        assert len(logged) == 4
        for got, want in zip(logged, out["true_norms"]):
            assert math.isclose(got, want, rel_tol=1e-5)
    for a, b in zip(*(_gains(out["scalars"]) for out in runs), strict=True):
        assert math.isfinite(a) and math.isclose(a, b, rel_tol=1e-5)


def test_the_scaler_costs_no_host_sync_on_steps_that_do_not_log():
    out = run(torch.float16, scaler_on=True)
    assert out["syncs"][:3] == [0, 0, 0]  # measured every step, logged at step 4
    assert out["syncs"][3] > 0
    scaler = torch.amp.GradScaler("cpu")
    scaler.scale(torch.ones(()))
    with count_host_syncs() as counted:
        scaler.get_scale()  # what passing the scale as a float would cost, each step
    assert counted.count == 1


def test_a_step_the_scaler_skips_after_an_overflow_raises_no_alert():
    """A huge initial scale overflows fp16 at step 1; the scaler skips that step and backs
    off. The monitor measures the steps that update the model, and warns of nothing."""
    overflow = dict(init_scale=2.0 ** 30, backoff=2.0 ** -20)
    out = run(torch.float16, scaler_on=True, **overflow)
    assert not math.isfinite(out["true_norms"][0]) and all(map(math.isfinite, out["true_norms"][1:]))
    assert "nonfinite_gradients" not in out["kinds"]
    logged = out["scalars"]["gradient_monitor/grad_norm"]
    assert [s for s, _ in logged] == [2, 3, 4]
    assert all(math.isclose(v, want, rel_tol=1e-5) for (_, v), want in zip(logged, out["true_norms"][1:]))
    unaware = run(torch.float16, scaler_on=True, pass_scaler=False, unscale_first=True, **overflow)
    assert "nonfinite_gradients" in unaware["kinds"]  # what the scaler saves the user from


def test_bf16_with_a_disabled_scaler_as_nanogpt_writes_it():
    """`GradScaler(enabled=False)`: scale() returns the loss as is; passing the scaler
    changes nothing, adds no sync; the norm is the one clip_grad_norm_ would return."""
    out = run(torch.bfloat16, scaler_on=False)
    assert out["syncs"][:3] == [0, 0, 0]
    logged = [v for _, v in out["scalars"]["gradient_monitor/grad_norm"]]
    assert all(math.isclose(got, want, rel_tol=1e-5) for got, want in zip(logged, out["true_norms"], strict=True))
    assert all(math.isfinite(g) for g in _gains(out["scalars"]))


def test_fp16_with_grad_scaler_under_compile_equals_eager():
    backend = CountingBackend()
    compiled = run(torch.float16, scaler_on=True, backend=backend)
    eager = run(torch.float16, scaler_on=True)
    assert backend.graphs == 1 and compiled["syncs"][:3] == [0, 0, 0]
    for tag, series in eager["scalars"].items():
        if tag.startswith("gradient_monitor/"):
            for (s1, v1), (s2, v2) in zip(series, compiled["scalars"][tag], strict=True):
                assert s1 == s2 and math.isclose(v1, v2, rel_tol=1e-5), (tag, s1)
