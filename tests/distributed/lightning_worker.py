"""Lightning with `TrainvitalsCallback` under torchrun (CPU, strategy="ddp").

    python lightning_worker.py OUTDIR

Every rank writes OUTDIR/rank<r>.json: its own local step losses, the global grad norm
its module saw in `on_before_optimizer_step` (after DDP's all-reduce, before clipping),
and the callback's events. Rank 0's logger holds our tags.
"""
import json
import os
import sys
from pathlib import Path

import lightning.pytorch as L
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integrations"))
from hosts import LR, batches, model  # noqa: E402

from trainvitals.integrations.lightning import TrainvitalsCallback  # noqa: E402


class Module(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.model = model()
        self.losses, self.norms = {}, {}

    def training_step(self, batch, i):
        loss = self.model(**batch)["loss"]
        self.losses[self.trainer.global_step + 1] = loss.item()
        return loss

    def on_before_optimizer_step(self, optimizer):
        norms = [p.grad.norm() for p in self.parameters() if p.grad is not None]
        self.norms[self.trainer.global_step + 1] = float(torch.linalg.vector_norm(torch.stack(norms)))

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=LR, weight_decay=0.0)


out = Path(sys.argv[1])
cb, module = TrainvitalsCallback({"gradient_monitor_interval": 1, "log_every": 4}), Module()
trainer = L.Trainer(max_steps=8, callbacks=[cb], default_root_dir=str(out), accelerator="cpu", devices=2,
                    strategy="ddp", enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=1,
                    enable_checkpointing=False, gradient_clip_val=0.01)
trainer.fit(module, torch.utils.data.DataLoader(batches(), batch_size=None))
rank = int(os.environ["RANK"])
(out / f"rank{rank}.json").write_text(json.dumps({
    "losses": module.losses, "norms": module.norms, "logdir": trainer.logger.log_dir if rank == 0 else None,
    "events": [[e.kind, e.step] for e in cb.events]}))
