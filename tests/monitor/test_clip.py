"""`Monitor.clip_grad_norm_` is `torch.nn.utils.clip_grad_norm_`: the same total norm, the
same clipped gradients, measured step or not (on a measured step it reuses the norms)."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from trainvitals.monitor.config import MonitorConfig
from trainvitals.monitor.monitor import Monitor
from trainvitals.sinks.base import SinkHub


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Linear(6, 16)
        self.blocks = nn.ModuleList(nn.Sequential(nn.Linear(16, 16), nn.Tanh()) for _ in range(3))
        self.head = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.emb(x)
        for b in self.blocks:
            h = h + b(h)
        return self.head(h)


def run(use_monitor: bool, interval: int, steps: int = 7) -> tuple[list[float], list[torch.Tensor]]:
    torch.manual_seed(0)
    model = Net()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    monitor = Monitor(model, opt, MonitorConfig(gradient_monitor_interval=interval), sinks=SinkHub()) \
        if use_monitor else None
    g = torch.Generator().manual_seed(1)
    totals, grads = [], []
    for _ in range(steps):
        x, y = torch.randn(8, 6, generator=g), torch.randint(0, 3, (8,), generator=g)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        if monitor is not None:
            monitor.after_backward()
            total = monitor.clip_grad_norm_(0.05)
        else:
            total = torch.nn.utils.clip_grad_norm_(model.parameters(), 0.05)
        totals.append(total.item())
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
        opt.step()
        opt.zero_grad(set_to_none=True)
        if monitor is not None:
            monitor.step_end(loss)
    return totals, grads


@pytest.mark.parametrize("interval", [1, 3])
def test_same_norm_and_gradients_as_torch(interval):
    ours, our_grads = run(True, interval)
    theirs, their_grads = run(False, interval)
    assert max(ours) > 0.05  # the clip is active on every step
    assert ours == pytest.approx(theirs, rel=1e-6)
    for a, b in zip(our_grads, their_grads):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=0)


def test_scaled_gradients_are_clipped_by_their_own_norm():
    """A loss scale still in the gradients: the measured norm is unscaled, the clip is not."""
    torch.manual_seed(0)
    model = Net()
    monitor = Monitor(model, torch.optim.SGD(model.parameters(), lr=0.1), sinks=SinkHub())
    (model(torch.randn(4, 6)).sum() * 1024).backward()
    expected = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()]))
    monitor.after_backward(grad_scale=1024.0)
    assert monitor.clip_grad_norm_(1.0).item() == pytest.approx(expected.item(), rel=1e-6)
