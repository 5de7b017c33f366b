"""The transformer demo shipped in lightning (lightning.pytorch.demos), as installed, with the
trainvitals callback added. Offline: WikiText2 reads ./data/wikitext-2.txt when it exists (here
the Python docs' pydoc topics text), so nothing is downloaded.
    python run.py NAME LR STEPS [CLIP|none] [SEED]"""
import sys
import torch
import lightning.pytorch as L
from lightning.pytorch.demos import LightningTransformer, WikiText2
from trainvitals.integrations.lightning import TrainvitalsCallback

name, lr, steps = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
clip = float(sys.argv[4]) if len(sys.argv) > 4 and sys.argv[4] != "none" else None
L.seed_everything(int(sys.argv[5]) if len(sys.argv) > 5 else 42)
data = WikiText2(download=False)

class Demo(LightningTransformer):
    def configure_optimizers(self):  # the demo's SGD; only its lr is set here
        return torch.optim.SGD(self.model.parameters(), lr=lr)
    def prepare_data(self):  # the demo's downloads; the text is already in ./data
        pass

    def train_dataloader(self):
        return torch.utils.data.DataLoader(data)

cb = TrainvitalsCallback()
trainer = L.Trainer(max_steps=steps, callbacks=[cb], default_root_dir=f"runs/{name}", accelerator="cpu", devices=1,
                    gradient_clip_val=clip, enable_progress_bar=False, enable_model_summary=False,
                    enable_checkpointing=False, log_every_n_steps=10)
trainer.fit(Demo(vocab_size=data.vocab_size))
for e in cb.events:
    print("EVENT", e.step, e.severity, e.kind, e.message[:150])
