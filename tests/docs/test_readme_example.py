"""The README's own-loop example runs as written, on the Monitor."""
import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parents[2] / "README.md"


def test_own_loop_example_runs(capsys):
    text = README.read_text()
    section = text.split("### In your own training loop", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    from trainvitals.tasks.lm.model import GPT, GPTConfig
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layers=6, d_model=32, n_heads=2, block_size=16))
    data = torch.randint(0, 256, (24, 4, 17))
    env = {
        "model": model,
        "loader": [(b[:, :-1], b[:, 1:]) for b in data],
        "loss_fn": lambda logits, y: torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten()),
        "optimizer": torch.optim.AdamW(model.parameters(), lr=1e-3),
    }
    exec(compile(code, "README.md", "exec"), env)
    monitor = env["monitor"]
    assert env["step"] == 24 and monitor.step == 24 and monitor.epoch == 1
    assert monitor.loss.signals.value is not None  # the EMA saw every step
    assert monitor.gradients.signals.drift.count == 8  # steps 1, 4, ..., 22 measured
    assert env["events"] == monitor.events[-len(env["events"]):] if env["events"] else True
