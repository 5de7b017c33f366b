"""`trainvitals train-lm` and `trainvitals sample`: build, train, close."""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch

from trainvitals import distributed as dist
from trainvitals.config import TrainerConfig
from trainvitals.errors import ConfigError, SnapshotError, check_range
from trainvitals.tasks.lm.data import ByteCorpus, LMDataConfig, check_vocab, describe, load_text
from trainvitals.tasks.lm.model import GPT, GPTConfig
from trainvitals.training import snapshot as snap
from trainvitals.training.rng import seed_everything
from trainvitals.training.run import finish_run, start_run
from trainvitals.training.trainer import LanguageModelTrainer

__all__ = ["CONFIGS", "train_lm", "sample"]

CONFIGS = (TrainerConfig, GPTConfig, LMDataConfig)

# The demo: about 2 min on 2 CPU cores: 5 epochs of 100 steps.
LM_DEFAULTS = {"epochs": 5, "steps_per_epoch": 100}


def train_lm(given: dict[str, Any], resume: str | None = None) -> int:
    run = start_run("lm", given, resume, CONFIGS, LM_DEFAULTS)
    cfg, model_cfg, data_cfg = run.cfg, run.model_cfg, run.data_cfg
    with run.building():
        seed_everything(cfg.seed)
        # --batch-size is per process: a batch holds every rank's rows (the trainer shards it)
        corpus = ByteCorpus(load_text(data_cfg.data), model_cfg.block_size, cfg.batch_size * dist.world_size(),
                            data_cfg.val_fraction, cfg.seed)
        check_vocab(corpus, model_cfg.vocab_size)
        model = GPT(model_cfg)
        run_info = {"task": "lm", "data_config": dataclasses.asdict(data_cfg),
                    "unigram_entropy": corpus.unigram_entropy, "uniform_loss": math.log(model_cfg.vocab_size),
                    **_model_facts(model_cfg), **run.run_info}
        trainer = LanguageModelTrainer(model, cfg, sinks=run.open_sinks(), model_config=model_cfg,
                                       run_info=run_info)
        if run.saved is not None:
            trainer.load_state_dict(run.saved)
        trainer.print(f"train-lm: {describe(corpus)}; {sum(p.numel() for p in model.parameters()):,} parameters "
                      f"on {trainer.device}; run directory {cfg.logdir}")
    return finish_run(trainer, corpus, corpus, run)


def _model_facts(m: GPTConfig) -> dict[str, Any]:
    return {"n_layers": m.n_layers, "d_model": m.d_model, "dropout": m.dropout, "n_heads": m.n_heads}


def sample(snapshot_path: str, prompt: str, max_new_tokens: int = 200, temperature: float = 0.8,
           seed: int = 0) -> str:
    check_range("temperature", temperature, 0)  # 0 = greedy
    check_range("max_new_tokens", max_new_tokens, 0)
    state = snap.read_snapshot(snapshot_path)
    if state.get("run_info", {}).get("task") != "lm" or not state.get("model_config"):
        raise ConfigError(f"snapshot={snapshot_path!r}: not a train-lm snapshot")
    model = GPT(GPTConfig(**state["model_config"]))
    model.load_state_dict(state["model"])
    if not snap.params_finite(model):
        raise SnapshotError(f"snapshot {snapshot_path!r} holds non-finite weights (NaN or inf); sample from "
                            f"an earlier snapshot of that run, e.g. its best.pt")
    model.eval()
    idx = torch.tensor([list(prompt.encode("utf-8")) or [10]], dtype=torch.long)
    out = model.generate(idx, max_new_tokens, temperature, torch.Generator().manual_seed(seed))
    return bytes(out[0].tolist()).decode("utf-8", errors="replace")
