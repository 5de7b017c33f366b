import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from trainvitals.probes.gradient_flow import GradientFlowProbe
from trainvitals.probes.sync_counter import count_host_syncs
from trainvitals.probes.weight_updates import WeightUpdateProbe


class Block(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x):
        q, k, v = self.qkv(self.ln1(x)).chunk(3, dim=-1)
        x = x + self.proj(F.scaled_dot_product_attention(q, k, v, is_causal=True))
        return x + self.mlp(self.ln2(x))


class TinyGPT(nn.Module):
    def __init__(self, n_layers: int = 2, d: int = 16) -> None:
        super().__init__()
        self.emb = nn.Embedding(32, d)
        self.blocks = nn.ModuleList(Block(d) for _ in range(n_layers))
        self.head = nn.Linear(d, 32)

    def forward(self, idx):
        h = self.emb(idx)
        for block in self.blocks:
            h = block(h)
        return F.cross_entropy(self.head(h).flatten(0, 1), idx.roll(-1, 1).flatten())


def run_steps(make_optimizer, probed: bool, n_steps: int = 4):
    """Host-sync count of n training steps, and the last stats (if probed)."""
    torch.manual_seed(0)
    model = TinyGPT()
    optimizer = make_optimizer(model.parameters())
    grads = GradientFlowProbe(model) if probed else None
    updates = WeightUpdateProbe(model, optimizer) if probed else None
    syncs = count_host_syncs()
    stats = None
    for _ in range(n_steps):
        idx = torch.randint(0, 32, (4, 12))
        with syncs:
            optimizer.zero_grad()
            if probed:
                grads.attach()
            model(idx).backward()
            if probed:
                grad_stats = grads.collect()
                grads.detach()
                updates.before_step()
            optimizer.step()
            if probed:
                updates.after_step()
                stats = grad_stats, updates.collect()
    return syncs, stats


OPTIMIZERS = {
    "sgd": lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9),
    "adamw": lambda ps: torch.optim.AdamW(ps, lr=1e-3, weight_decay=0.1),
}


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_probes_add_no_host_sync(name):
    plain, _ = run_steps(OPTIMIZERS[name], probed=False)
    probed, (grad_stats, update_stats) = run_steps(OPTIMIZERS[name], probed=True)
    # AdamW on CPU reads its step counter with .item() itself; the probes add nothing.
    assert probed.calls == plain.calls
    if name == "sgd":
        assert probed.count == 0

    with count_host_syncs() as one:
        host = grad_stats.to_host()
    assert one.count == 1 and set(host["gains"]) == {"0", "1"}
    with count_host_syncs() as one:
        host = update_stats.to_host()
    assert one.count == 1 and host["frozen_params"] == 0


def test_counter_counts_and_restores():
    original_item, original_bool = torch.Tensor.item, torch.Tensor.__bool__
    x = torch.ones(3)
    with count_host_syncs() as syncs:
        x.sum().item()
        if x[0]:
            float(x[1])
        x.tolist()
        x.to(torch.float64)  # stays on the CPU device: not a transfer from a device
    assert syncs.count == 4
    assert syncs.calls == {"item": 1, "__bool__": 1, "__float__": 1, "tolist": 1}
    assert torch.Tensor.item is original_item and torch.Tensor.__bool__ is original_bool
    assert "item" not in torch.Tensor.__dict__
