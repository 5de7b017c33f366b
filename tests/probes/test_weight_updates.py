import math

import pytest
import torch
import torch.nn as nn

from trainvitals.errors import ConfigError
from trainvitals.probes.weight_updates import WeightUpdateProbe


def make_model(dtype=torch.float32):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 32), nn.Tanh(), nn.Linear(32, 4)).to(dtype)


def step(model, optimizer, probe, x=None):
    """One measured step; returns the probe's stats and the copy-based ratios."""
    x = torch.randn(8, 16, dtype=next(model.parameters()).dtype) if x is None else x
    optimizer.zero_grad()
    model(x).pow(2).mean().backward()
    probe.before_step()
    old = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer.step()
    probe.after_step()
    reference = {n: ((p.detach() - old[n]).float().norm() / old[n].float().norm()).item()
                 for n, p in model.named_parameters()}
    return probe.collect(), reference


OPTIMIZERS = {
    "adamw_wd": lambda ps: torch.optim.AdamW(ps, lr=1e-2, weight_decay=0.1),
    "adamw_wd_fused": lambda ps: torch.optim.AdamW(ps, lr=1e-2, weight_decay=0.1, fused=True),
    "adam_l2_amsgrad_maximize": lambda ps: torch.optim.Adam(
        ps, lr=1e-2, weight_decay=0.1, amsgrad=True, maximize=True, foreach=True),
    "sgd_momentum": lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=1e-2),
    "sgd_nesterov": lambda ps: torch.optim.SGD(
        ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-2),
    "sgd_plain_wd": lambda ps: torch.optim.SGD(ps, lr=0.1, weight_decay=1e-2),
    "rmsprop_copied": lambda ps: torch.optim.RMSprop(ps, lr=1e-2),
}


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_ratios_match_copy_based_reference(name):
    model = make_model()
    optimizer = OPTIMIZERS[name](model.parameters())
    probe = WeightUpdateProbe(model, optimizer, mode="rebuild")
    torch.manual_seed(1)
    for _ in range(3):
        stats, reference = step(model, optimizer, probe)
        host = stats.to_host()
        assert host["update_ratio"] == pytest.approx(reference, rel=1e-5)
        assert host["update_ratio_max"] == pytest.approx(max(reference.values()), rel=1e-5)
        assert host["update_ratio_mean"] == pytest.approx(
            sum(reference.values()) / len(reference), rel=1e-5)
        assert host["frozen_params"] == 0 and host["unchanged"] == []


def test_uneven_adam_steps_are_rebuilt_per_parameter():
    model = make_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    probe = WeightUpdateProbe(model, optimizer, mode="rebuild")
    torch.manual_seed(2)
    step(model, optimizer, probe)
    model[0].requires_grad_(False)  # layer 0 misses a step: its `step` counter lags
    step(model, optimizer, probe)
    model[0].requires_grad_(True)
    stats, reference = step(model, optimizer, probe)
    assert stats.to_host()["update_ratio"] == pytest.approx(reference, rel=1e-5)


def test_frozen_left_out_and_lr_zero():
    model = make_model()
    model[0].bias.requires_grad_(False)
    optimizer = torch.optim.AdamW(
        [{"params": [model[0].weight]}, {"params": [model[2].weight], "lr": 0.0}],
        lr=1e-2, weight_decay=0.1)  # model[2].bias is left out of the optimizer
    probe = WeightUpdateProbe(model, optimizer, mode="rebuild")
    stats, reference = step(model, optimizer, probe)
    host = stats.to_host()
    assert host["intentionally_frozen"] == ["0.bias"]
    assert sorted(host["unchanged"]) == ["2.bias", "2.weight"]
    assert host["frozen_params"] == 2
    assert "0.bias" not in host["update_ratio"]
    assert host["update_ratio"] == pytest.approx(
        {n: v for n, v in reference.items() if n != "0.bias"}, rel=1e-5)


def test_parameter_without_gradient_is_unchanged():
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    probe = WeightUpdateProbe(model, optimizer, mode="rebuild")
    optimizer.zero_grad()
    model[0](torch.randn(4, 16)).sum().backward()  # layer 2 gets no gradient
    probe.before_step()
    optimizer.step()
    probe.after_step()
    assert sorted(probe.collect().to_host()["unchanged"]) == ["2.bias", "2.weight"]


def test_bf16_weights_use_the_realised_update():
    model = make_model(torch.bfloat16)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-6)  # below half a bf16 ulp
    probe = WeightUpdateProbe(model, optimizer, mode="rebuild")
    stats, reference = step(model, optimizer, probe)
    host = stats.to_host()
    assert host["update_ratio"] == pytest.approx(reference, rel=1e-5, abs=1e-12)
    assert host["frozen_params"] == sum(1 for v in reference.values() if v == 0) > 0


def test_skipped_step_alerts_nothing():
    model = make_model()
    optimizer = torch.optim.AdamW(model.parameters())
    probe = WeightUpdateProbe(model, optimizer, mode="rebuild")
    model(torch.randn(4, 16)).sum().backward()
    probe.before_step()  # e.g. GradScaler found an inf and never called step()
    probe.after_step()
    host = probe.collect().to_host()
    assert host["skipped"] and host["frozen_params"] == 0 and host["unchanged"] == []


def test_zero_weights_have_an_undefined_ratio():
    model = make_model()
    nn.init.zeros_(model[2].bias)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    probe = WeightUpdateProbe(model, optimizer, mode="rebuild")
    stats, reference = step(model, optimizer, probe)
    host = stats.to_host()
    assert math.isnan(host["update_ratio"]["2.bias"])
    finite = [v for n, v in reference.items() if n != "2.bias"]
    assert host["update_ratio_max"] == pytest.approx(max(finite), rel=1e-5)


@pytest.mark.parametrize("mode", ["copy", "auto"])  # auto copies CPU parameters
def test_copy_mode_and_bad_settings(mode):
    model = make_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    probe = WeightUpdateProbe(model, optimizer, mode=mode)
    stats, reference = step(model, optimizer, probe)
    assert stats.to_host()["update_ratio"] == pytest.approx(reference, rel=1e-6)
    with pytest.raises(ConfigError, match="mode='exact'"):
        WeightUpdateProbe(model, optimizer, mode="exact")
    with pytest.raises(RuntimeError, match="before_step"):
        WeightUpdateProbe(model, optimizer, mode="rebuild").collect()


@pytest.mark.parametrize("name", ["adamw_fused", "sgd_fused", "sgd"])
def test_grad_scaler_steps_and_skips(name):
    model = make_model()
    optimizer = {
        "adamw_fused": lambda ps: torch.optim.AdamW(ps, lr=1e-2, weight_decay=0.1, fused=True),
        "sgd_fused": lambda ps: torch.optim.SGD(ps, lr=0.1, fused=True),
        "sgd": lambda ps: torch.optim.SGD(ps, lr=0.1),
    }[name](model.parameters())
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    probe = WeightUpdateProbe(model, optimizer, mode="rebuild")
    torch.manual_seed(3)
    for inject_inf in (False, False, True):
        optimizer.zero_grad()
        scaler.scale(model(torch.randn(8, 16)).pow(2).mean()).backward()
        if inject_inf:
            model[0].weight.grad[0, 0] = float("inf")
        probe.before_step()
        old = {n: p.detach().clone() for n, p in model.named_parameters()}
        scaler.step(optimizer)
        scaler.update()
        probe.after_step()
        host = probe.collect().to_host()
        reference = {n: ((p.detach() - old[n]).norm() / old[n].norm()).item()
                     for n, p in model.named_parameters()}
        assert host["update_ratio"] == pytest.approx(reference, rel=1e-5)
        assert host["frozen_params"] == 0  # a step skipped for an inf freezes nothing
    assert all(v == 0 for v in reference.values())
