import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from trainvitals.errors import ConfigError
from trainvitals.probes.gradient_flow import GradientFlowProbe, find_blocks


class Scale(nn.Module):
    def __init__(self, c: float) -> None:
        super().__init__()
        self.c = c
        self.unused = nn.Linear(1, 1)  # makes it block-like for find_blocks

    def forward(self, x):
        return x * self.c


class Residual(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.fc = nn.Linear(d, d)

    def forward(self, x):
        return x + torch.tanh(self.fc(x))


class InPlace(nn.Module):
    """Scales its input in place, then a residual MLP with an in-place ReLU."""

    def __init__(self, d: int, in_place: bool = True) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d, d), nn.Linear(d, d)
        self.in_place = in_place

    def forward(self, x):
        if self.in_place:
            x.mul_(2.0)
            h = self.fc1(x)
            h.relu_()
        else:
            x = x * 2.0
            h = F.relu(self.fc1(x))
        return x + self.fc2(h)


class Stack(nn.Module):
    def __init__(self, blocks, d: int = 8, reuse_output: bool = False) -> None:
        super().__init__()
        self.inp = nn.Linear(4, d)
        self.blocks = nn.ModuleList(blocks)
        self.out = nn.Linear(d, 3)
        self.reuse_output = reuse_output

    def forward(self, x, keep=None):
        h = self.inp(x)
        for block in self.blocks:
            if keep is not None:
                keep.append(h)
            h = block(h)
            if keep is not None:
                keep.append(h)
        loss = self.out(h).pow(2).mean()
        if self.reuse_output:  # the last block's output gets two gradient contributions
            loss = loss + 0.3 * h.sin().sum()
        return loss


def reference_gains(model, x):
    """Gains from torch.autograd.grad w.r.t. each block's input and output."""
    keep = []
    loss = model(x, keep)
    grads = torch.autograd.grad(loss, keep)
    return [grads[2 * i].norm().item() / grads[2 * i + 1].norm().item()
            for i in range(len(keep) // 2)]


def measure(model, x, **probe_kwargs):
    probe = GradientFlowProbe(model, **probe_kwargs)
    probe.attach()
    model(x).backward()
    probe.detach()
    return probe.collect()


def test_gain_is_grad_input_over_grad_output():
    torch.manual_seed(0)
    model = Stack([Scale(1.0), Scale(2.0), Scale(0.5)])
    stats = measure(model, torch.randn(5, 4))
    assert stats.block_names == ["0", "1", "2"]
    assert stats.gains.tolist() == pytest.approx([1.0, 2.0, 0.5], rel=1e-6)
    host = stats.to_host()
    assert host["gains"] == pytest.approx({"0": 1.0, "1": 2.0, "2": 0.5}, rel=1e-6)
    assert host["mean_gain"] == pytest.approx(3.5 / 3, rel=1e-6)
    assert host["max_gain"] == pytest.approx(2.0, rel=1e-6)
    assert host["amplification"] == pytest.approx(1.0, rel=1e-6)


@pytest.mark.parametrize("reuse_output", [False, True])
def test_residual_gain_matches_autograd(reuse_output):
    torch.manual_seed(1)
    model = Stack([Residual(8) for _ in range(4)], reuse_output=reuse_output)
    x = torch.randn(6, 4)
    expected = reference_gains(model, x)
    stats = measure(model, x)
    assert stats.gains.tolist() == pytest.approx(expected, rel=1e-5)
    assert stats.amplification.item() == pytest.approx(math.prod(expected), rel=1e-5)
    assert stats.gains.dtype == torch.float32


def test_in_place_ops_measured_at_the_real_input():
    torch.manual_seed(2)
    model = Stack([InPlace(8) for _ in range(3)])
    twin = Stack([InPlace(8, in_place=False) for _ in range(3)])
    twin.load_state_dict(model.state_dict())
    x = torch.randn(6, 4)
    expected = reference_gains(twin, x)
    stats = measure(model, x)
    assert stats.gains.tolist() == pytest.approx(expected, rel=1e-5)
    assert min(expected) > 1.5  # the in-place x2 counts: measured before it, not after


def test_grad_norm_equals_clip_grad_norm():
    torch.manual_seed(3)
    model = Stack([Residual(8) for _ in range(3)])
    stats = measure(model, torch.randn(6, 4))
    per_param = {n: p.grad.norm().item() for n, p in model.named_parameters()}
    clipped = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1e-3)
    assert stats.grad_norm.item() == pytest.approx(clipped.item(), rel=1e-6)
    assert stats.to_host()["param_grad_norms"] == pytest.approx(per_param, rel=1e-6)
    assert stats.nonfinite.tolist() == [False] * len(per_param)


def test_nonfinite_gradients_are_flagged():
    torch.manual_seed(4)
    model = Stack([Residual(8) for _ in range(2)])
    probe = GradientFlowProbe(model)
    model(torch.randn(3, 4)).backward()
    model.blocks[1].fc.bias.grad[0] = float("nan")
    host = probe.collect().to_host()
    assert host["nonfinite_params"] == ["blocks.1.fc.bias"]
    assert math.isnan(host["grad_norm"])


def test_detach_removes_every_hook():
    torch.manual_seed(5)
    model = Stack([Residual(8) for _ in range(3)])
    probe = GradientFlowProbe(model)
    probe.attach()
    model(torch.randn(3, 4)).backward()
    first = probe.collect()
    assert not torch.isnan(first.gains).any()
    probe.detach()
    for block in model.blocks:
        assert not block._forward_hooks and not block._forward_pre_hooks
    model(torch.randn(3, 4)).backward()
    assert torch.isnan(probe.collect().gains).all()  # nothing new was recorded
    # detached between forward and backward: the tensor hooks go too
    probe.attach()
    loss = model(torch.randn(3, 4))
    probe.detach()
    loss.backward()
    assert torch.isnan(probe.collect().gains).all()


def test_bf16_autocast():
    torch.manual_seed(6)
    model = Stack([Residual(16) for _ in range(3)], d=16)
    x = torch.randn(8, 4)
    fp32 = measure(model, x).gains
    model.zero_grad()
    probe = GradientFlowProbe(model)
    probe.attach()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(x)
    loss.backward()
    stats = probe.collect()
    assert stats.gains.dtype == torch.float32 and stats.grad_norm.dtype == torch.float32
    assert stats.gains.tolist() == pytest.approx(fp32.tolist(), rel=5e-2)


def test_block_called_several_times_and_micro_batches():
    torch.manual_seed(7)
    shared = Residual(8)
    model = Stack([shared, shared, shared])  # one module, three calls
    x = torch.randn(6, 4)
    per_call = reference_gains(model, x)
    stats = measure(model, x, blocks=[("shared", shared)])
    assert stats.gains.item() == pytest.approx(math.prod(per_call) ** (1 / 3), rel=1e-5)
    assert stats.amplification.item() == pytest.approx(math.prod(per_call), rel=1e-5)
    # two micro-batches before one collect(): one gain per call, geometric mean
    model = Stack([Residual(8) for _ in range(2)])
    xs = torch.randn(4, 4), torch.randn(4, 4)
    expected = [reference_gains(model, xi) for xi in xs]
    probe = GradientFlowProbe(model)
    probe.attach()
    for xi in xs:
        model(xi).backward()
    gains = probe.collect().gains.tolist()
    assert gains == pytest.approx([math.sqrt(a * b) for a, b in zip(*expected)], rel=1e-5)


def test_activation_checkpointing_recompute_is_ignored():
    torch.manual_seed(8)

    class Checkpointed(Stack):
        def forward(self, x, keep=None):
            h = self.inp(x)
            for block in self.blocks:
                h = checkpoint(block, h, use_reentrant=False)
            return self.out(h).pow(2).mean()

    model = Checkpointed([Residual(8) for _ in range(3)])
    plain = Stack([Residual(8) for _ in range(3)])
    plain.load_state_dict(model.state_dict())
    x = torch.randn(5, 4)
    assert measure(model, x).gains.tolist() == pytest.approx(reference_gains(plain, x), rel=1e-5)


class GPTBlock(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.ln = nn.LayerNorm(d)
        self.attn = nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x):
        x = x + self.attn(self.ln(x))
        return x + self.mlp(self.ln(x))


class TinyGPT(nn.Module):
    def __init__(self, n: int = 3, d: int = 8) -> None:
        super().__init__()
        self.tok_emb = nn.Embedding(16, d)
        self.blocks = nn.ModuleList(GPTBlock(d) for _ in range(n))
        self.head = nn.Linear(d, 16)


class Coder(nn.Module):
    def __init__(self, n: int, d: int = 8) -> None:
        super().__init__()
        self.layers = nn.ModuleList(GPTBlock(d) for _ in range(n))
        self.norm = nn.LayerNorm(d)


class EncoderDecoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(16, 8)
        self.encoder = Coder(2)
        self.decoder = Coder(3)
        self.heads = nn.ModuleList([nn.Linear(8, 16), nn.Linear(8, 16)])  # not blocks


def test_find_blocks_names():
    assert [n for n, _ in find_blocks(TinyGPT())] == ["0", "1", "2"]
    assert [n for n, _ in find_blocks(EncoderDecoder())] == [
        "encoder.0", "encoder.1", "decoder.0", "decoder.1", "decoder.2"]

    class TwoLists(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.self_layers = nn.ModuleList(GPTBlock(8) for _ in range(2))
            self.cross_layers = nn.ModuleList(GPTBlock(8) for _ in range(1))

    assert [n for n, _ in find_blocks(TwoLists())] == [
        "self_layers.0", "self_layers.1", "cross_layers.0"]


def test_no_blocks_found_is_a_config_error():
    with pytest.raises(ConfigError, match="blocks=None"):
        GradientFlowProbe(nn.Linear(3, 3))
    probe = GradientFlowProbe(nn.Linear(3, 3), blocks=[])
    with pytest.raises(ConfigError, match="repeated: a"):
        GradientFlowProbe(nn.Linear(3, 3), blocks=[("a", nn.Linear(1, 1)), ("a", nn.Linear(1, 1))])
    probe.model(torch.randn(2, 3)).sum().backward()
    stats = probe.collect()
    assert stats.gains.numel() == 0 and stats.grad_norm.item() > 0
