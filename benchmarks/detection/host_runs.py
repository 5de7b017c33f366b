"""Benchmark runs made by the other hosts: HF `transformers.Trainer` on a GPT-2 built from
`GPT2Config` (never downloaded), Lightning on our byte GPT, and a nanoGPT-style plain
loop on `trainvitals.Monitor`. Every host gets the same byte corpus, the same LR
schedule (linear warmup, cosine to 10%), clipping at 1.0, and the same faults, put in
from outside the host so each host's own code path is what is measured.

Each writes its log where, and as, that host does:

| host | what the scoring replays (`view`) | loss cadence | gains |
|---|---|---|---|
| hf | HF's TensorBoard run (`hf/runs/<x>`): HF's own tags and the callback's | every step (callback), 10-step means (HF) | every 10th step |
| hf (own log) | `hf/trainer_state.json`: HF's `log_history` alone, no callback tag | 10-step means | none |
| lightning | `pl/lightning_logs/version_0`: the callback's tags beside the module's `train_loss` | every step | every step |
| loop | `metrics.jsonl`, written by `Monitor` through `JSONLSink` | every step | every 3rd or 10th step |

What the host raised live (`.events`) goes to `events.jsonl` beside the view.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from trainvitals.events import Event
from trainvitals.monitor.config import MonitorConfig
from trainvitals.tasks.lm.data import ByteCorpus, load_text

__all__ = ["train_host", "HF_OWN_LOG", "EVENTS_FILE"]

HF_OWN_LOG = "hf/trainer_state.json"
EVENTS_FILE = "events.jsonl"
_VAL_BYTES = 20_000  # the corpus' tail: a stable validation loss, quick to compute


# --- what every host shares: data, schedule, faults ------------------------------------------
def _corpus(spec, block_size: int) -> ByteCorpus:
    text = load_text()
    return ByteCorpus(text, block_size, spec.trainer["batch_size"], _VAL_BYTES / len(text), spec.seed)


def _train_batches(corpus: ByteCorpus, epochs: int, steps: int) -> list[list[tuple[torch.Tensor, torch.Tensor]]]:
    out = []
    for e in range(epochs):
        it = corpus.epoch(e)
        out.append([next(it) for _ in range(steps)])
    return out


def _data(spec):
    """(corpus, epochs, steps per epoch, each epoch's training batches, validation batches)"""
    corpus = _corpus(spec, spec.model["block_size"])
    epochs, steps = spec.trainer["epochs"], spec.trainer["steps_per_epoch"]
    return corpus, epochs, steps, _train_batches(corpus, epochs, steps), list(corpus.validation())


def lr_factor(step: int, warmup: int, total: int) -> float:
    """The multiplier of the peak LR at optimizer step `step` (0-based): linear warmup,
    then cosine to 10% (nanoGPT's get_lr)."""
    if step < warmup:
        return (step + 1) / (warmup + 1)
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.1 + 0.45 * (1 + math.cos(math.pi * progress))


def _optimizer(params, spec) -> torch.optim.Optimizer:
    t = spec.trainer
    return torch.optim.AdamW(params, lr=t["lr"], betas=(0.9, t.get("adam_beta2", 0.95)),
                             weight_decay=t.get("weight_decay", 0.0))


def _params(model: nn.Module, blocks: nn.ModuleList, spec) -> list[nn.Parameter]:
    """Every parameter, or all but one block's: the user's parameter list that forgot a block."""
    left_out = spec.fault.get("leave_out_block")
    if left_out is None:
        return list(model.parameters())
    skip = {id(p) for p in blocks[left_out].parameters()}
    return [p for p in model.parameters() if id(p) not in skip]


class _BadBatch:
    """Training forward number `bad_step` gets its embeddings times 1e30 (faults.CorruptBatch,
    for any host: a forward hook on the embedding module)."""

    def __init__(self, embedding: nn.Module, bad_step: int, scale: float = 1e30) -> None:
        self.bad_step, self.scale, self.forwards = bad_step, scale, 0
        embedding.register_forward_hook(self._hook)

    def _hook(self, module, args, out):
        if not (module.training and torch.is_grad_enabled()):
            return None
        self.forwards += 1
        return out * self.scale if self.forwards == self.bad_step else None


def _monitor_config(spec) -> MonitorConfig:
    epochs = spec.trainer["epochs"]
    return MonitorConfig(evaluation_epochs=list(range(1, epochs)), on_nonfinite_loss="stop",
                         gradient_monitor_interval=spec.trainer.get("gradient_monitor_interval", 3))


def _write_events(path: Path, events: list[Event]) -> None:
    path.write_text("".join(json.dumps({"type": "event", **e.to_dict()}) + "\n" for e in events))


def train_host(spec, logdir: Path) -> dict[str, Any]:
    """Train `spec` with its host into `logdir`; returns what spec.json records."""
    run = {"hf": _hf, "lightning": _lightning, "loop": _loop}[spec.host]
    return run(spec, logdir)


# --- HF transformers.Trainer: GPT-2 from a config ---------------------------------------------
def _hf(spec, logdir: Path) -> dict[str, Any]:
    import os

    from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

    from trainvitals.integrations.transformers import TrainvitalsCallback

    m, t = spec.model, spec.trainer
    os.environ.pop("TENSORBOARD_LOGGING_DIR", None)
    corpus, epochs, steps, batches, val = _data(spec)
    train = batches[0]  # one epoch of rows; HF reshuffles it each epoch

    class Rows(torch.utils.data.Dataset):  # GPT-2 shifts its labels itself: a row is T + 1 tokens
        def __init__(self, batches):
            self.rows = [torch.cat([x[i], y[i, -1:]]) for x, y in batches for i in range(len(x))]

        def __len__(self):
            return len(self.rows)

        def __getitem__(self, i):
            return {"input_ids": self.rows[i], "labels": self.rows[i]}

    torch.manual_seed(spec.seed)
    cfg = GPT2Config(vocab_size=256, n_positions=m["block_size"] + 1, n_embd=m["d_model"], n_layer=m["n_layers"],
                     n_head=m["n_heads"], resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                     initializer_range=m.get("init_std", 0.02))
    model = GPT2LMHeadModel(cfg)
    if "bad_step" in spec.fault:
        _BadBatch(model.transformer.wte, spec.fault["bad_step"])
    opt = _optimizer(_params(model, model.transformer.h, spec), spec)
    total = epochs * steps
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, t["warmup_steps"], total))
    args = TrainingArguments(str(logdir / "hf"), num_train_epochs=epochs, per_device_train_batch_size=t["batch_size"],
                             per_device_eval_batch_size=64, max_grad_norm=1.0, report_to=["tensorboard"],
                             use_cpu=True, save_strategy="no", logging_steps=t.get("logging_steps", 10),
                             eval_strategy="epoch", disable_tqdm=True, dataloader_num_workers=0,
                             seed=spec.seed, data_seed=spec.seed)
    cb = TrainvitalsCallback(_monitor_config(spec))

    trainer = Trainer(model=model, args=args, train_dataset=Rows(train), eval_dataset=Rows(val), callbacks=[cb],
                      optimizers=(opt, sched))
    trainer.train()
    trainer.state.save_to_json(str(logdir / HF_OWN_LOG))
    (view,) = (logdir / "hf" / "runs").iterdir()
    _write_events(logdir / EVENTS_FILE, cb.events)
    return {"steps": trainer.state.global_step, "view": str(view.relative_to(logdir)),
            "unigram_entropy": corpus.unigram_entropy}


# --- Lightning: our byte GPT in a LightningModule ---------------------------------------------
def _lightning(spec, logdir: Path) -> dict[str, Any]:
    import lightning.pytorch as L

    from trainvitals.integrations.lightning import TrainvitalsCallback
    from trainvitals.tasks.lm.model import GPT, GPTConfig

    m, t = spec.model, spec.trainer
    corpus, epochs, steps, train, val = _data(spec)
    total = epochs * steps

    class LM(L.LightningModule):
        def __init__(self):
            super().__init__()
            torch.manual_seed(spec.seed)
            self.gpt = GPT(GPTConfig(**m))
            if "bad_step" in spec.fault:
                _BadBatch(self.gpt.tok_emb, spec.fault["bad_step"])

        def _loss(self, batch):
            x, y = batch
            return F.cross_entropy(self.gpt(x).flatten(0, 1), y.flatten())

        def training_step(self, batch, i):
            loss = self._loss(batch)
            self.log("train_loss", loss)
            return loss

        def validation_step(self, batch, i):
            self.log("val_loss", self._loss(batch), on_epoch=True, prog_bar=False)

        def configure_optimizers(self):
            opt = _optimizer(_params(self, self.gpt.blocks, spec), spec)
            sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, t["warmup_steps"], total))
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    class Epochs(torch.utils.data.IterableDataset):
        def __init__(self):
            self.epoch = 0

        def __iter__(self):
            batches, self.epoch = train[min(self.epoch, epochs - 1)], self.epoch + 1
            yield from batches

        def __len__(self):
            return steps

    cb = TrainvitalsCallback(_monitor_config(spec))
    trainer = L.Trainer(max_epochs=epochs, callbacks=[cb], default_root_dir=str(logdir / "pl"), accelerator="cpu",
                        gradient_clip_val=1.0, enable_progress_bar=False, enable_model_summary=False,
                        enable_checkpointing=False, log_every_n_steps=10, num_sanity_val_steps=0, devices=1)
    trainer.fit(LM(), torch.utils.data.DataLoader(Epochs(), batch_size=None),
                torch.utils.data.DataLoader(val, batch_size=None))
    view = Path(trainer.logger.log_dir)
    _write_events(logdir / EVENTS_FILE, cb.events)
    return {"steps": trainer.global_step, "view": str(view.relative_to(logdir)),
            "unigram_entropy": corpus.unigram_entropy}


# --- a nanoGPT-style plain loop on Monitor ----------------------------------------------------
class _Attention(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.c_attn, self.c_proj, self.heads = nn.Linear(d, 3 * d), nn.Linear(d, d), heads

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = (z.view(B, T, self.heads, C // self.heads).transpose(1, 2) for z in self.c_attn(x).split(C, dim=2))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))


class _Block(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.ln_1, self.attn, self.ln_2 = nn.LayerNorm(d), _Attention(d, heads), nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class NanoGPT(nn.Module):
    """nanoGPT's model, trimmed: tied embedding and head, c_proj scaled by 1/sqrt(2 L)."""

    def __init__(self, vocab: int, block_size: int, n_layers: int, d: int, heads: int) -> None:
        super().__init__()
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(vocab, d), wpe=nn.Embedding(block_size, d),
            h=nn.ModuleList(_Block(d, heads) for _ in range(n_layers)), ln_f=nn.LayerNorm(d)))
        self.lm_head = nn.Linear(d, vocab, bias=False)
        self.transformer.wte.weight = self.lm_head.weight
        for name, p in self.named_parameters():
            if p.dim() >= 2:
                std = 0.02 / math.sqrt(2 * n_layers) if name.endswith("c_proj.weight") else 0.02
                nn.init.normal_(p, 0.0, std)
            elif name.endswith("bias"):
                nn.init.zeros_(p)

    def forward(self, idx, targets):
        tr = self.transformer
        x = tr.wte(idx) + tr.wpe(torch.arange(idx.shape[1], device=idx.device))
        for block in tr.h:
            x = block(x)
        logits = self.lm_head(tr.ln_f(x))
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten())


class _LossOf(nn.Module):
    """Our GPT called as nanoGPT's model is, `model(idx, targets) -> loss`."""

    def __init__(self, gpt: nn.Module) -> None:
        super().__init__()
        self.gpt = gpt

    def forward(self, idx, targets):
        return F.cross_entropy(self.gpt(idx).flatten(0, 1), targets.flatten())


def _loop(spec, logdir: Path) -> dict[str, Any]:
    from trainvitals.monitor.monitor import Monitor
    from trainvitals.sinks.base import SinkHub
    from trainvitals.sinks.jsonl import JSONLSink

    m, t = spec.model, spec.trainer
    corpus, epochs, steps, train, val = _data(spec)
    torch.manual_seed(spec.seed)
    if m.get("arch") == "gpt":  # our byte GPT (untied head, unscaled init), as the creeping runs of our Trainer
        from trainvitals.tasks.lm.model import GPT, GPTConfig
        model = _LossOf(GPT(GPTConfig(**{k: v for k, v in m.items() if k != "arch"})))
        blocks, embedding = model.gpt.blocks, model.gpt.tok_emb
    else:
        model = NanoGPT(256, m["block_size"], m["n_layers"], m["d_model"], m["n_heads"])
        blocks, embedding = model.transformer.h, model.transformer.wte
    if "bad_step" in spec.fault:
        _BadBatch(embedding, spec.fault["bad_step"])
    opt = _optimizer(_params(model, blocks, spec), spec)
    sinks = SinkHub([JSONLSink(logdir / "metrics.jsonl")])
    clip = t.get("gradient_clip", 1.0)
    monitor = Monitor(model, opt, _monitor_config(spec), sinks=sinks,
                      run_info={"gradient_clip": clip or None, "warmup_steps": t["warmup_steps"],
                                "unigram_entropy": corpus.unigram_entropy, "uniform_loss": math.log(256)})
    total, it = epochs * steps, 0
    try:
        for epoch in range(epochs):
            model.train()
            for x, y in train[epoch]:
                for g in opt.param_groups:
                    g["lr"] = t["lr"] * lr_factor(it, t["warmup_steps"], total)
                loss = model(x, y)
                loss.backward()
                monitor.after_backward()
                if clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
                opt.step()
                opt.zero_grad(set_to_none=True)
                monitor.step_end(loss)
                it += 1
                if monitor.stop_reason:
                    break
            if monitor.stop_reason:
                break
            model.eval()
            with torch.no_grad():
                val_loss = sum(float(model(x, y)) * len(x) for x, y in val) / sum(len(x) for x, _ in val)
            monitor.end_epoch(val_loss)
    finally:
        monitor.close()
        sinks.close()
    _write_events(logdir / EVENTS_FILE, monitor.events)
    return {"steps": monitor.step, "view": "metrics.jsonl", "unigram_entropy": corpus.unigram_entropy}
