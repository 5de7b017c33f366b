"""`trainvitals train-lm` and `trainvitals sample`: build, train, close."""
from __future__ import annotations

from typing import Any

import torch

from trainvitals.config import TrainerConfig
from trainvitals.errors import ConfigError
from trainvitals.tasks.lm.data import ByteCorpus, LMDataConfig, describe, load_text
from trainvitals.tasks.lm.model import GPT, GPTConfig
from trainvitals.training import snapshot as snap
from trainvitals.training.rng import seed_everything
from trainvitals.training.run import find_resume, new_logdir, open_sinks, resumed_config, summary
from trainvitals.training.trainer import LanguageModelTrainer

__all__ = ["CONFIGS", "train_lm", "sample"]

CONFIGS = (TrainerConfig, GPTConfig, LMDataConfig)

# The demo: about 2 min on 2 CPU cores: 5 epochs of 100 steps.
LM_DEFAULTS = {"epochs": 5, "steps_per_epoch": 100}


def train_lm(given: dict[str, Any], resume: str | None = None) -> int:
    from trainvitals.cli_config import build_configs
    if resume is not None:
        path = find_resume(resume, given.get("logdir", ""))
        saved = snap.read_snapshot(path)
        cfg = resumed_config(saved["trainer_config"], given)
        model_cfg = GPTConfig(**saved["model_config"])
        data_cfg = LMDataConfig(**{k: saved["run_info"][k] for k in ("data", "val_fraction")})
        if "logdir" not in given:
            cfg.logdir = str(path.parent.parent)
    else:
        cfg, model_cfg, data_cfg = build_configs({**LM_DEFAULTS, **given}, *CONFIGS)
        cfg.logdir = cfg.logdir or new_logdir("lm")
    seed_everything(cfg.seed)
    corpus = ByteCorpus(load_text(data_cfg.data), model_cfg.block_size, cfg.batch_size,
                        data_cfg.val_fraction, cfg.seed)
    model = GPT(model_cfg)
    run_info = {"task": "lm", "data": data_cfg.data, "val_fraction": data_cfg.val_fraction,
                "unigram_entropy": corpus.unigram_entropy, **_model_facts(model_cfg)}
    # a resumed run drops what was logged after its snapshot, so no step repeats
    purge = None if resume is None else saved["progress"]["global_step"] + 1
    sinks = open_sinks(cfg.logdir, purge, cfg.progress_bar, None)
    trainer = LanguageModelTrainer(model, cfg, sinks=sinks, model_config=model_cfg, run_info=run_info)
    if resume is not None:
        trainer.load_state_dict(saved)
    trainer.print(f"train-lm: {describe(corpus)}; {sum(p.numel() for p in model.parameters()):,} parameters "
                  f"on {trainer.device}; run directory {cfg.logdir}")
    try:
        reason = trainer.fit(corpus, corpus)
    finally:
        trainer.close()
    report = _write_report(cfg.logdir)
    print(summary(cfg.logdir, reason.value, trainer.stop_message, report))
    return 0 if reason.value in ("completed", "early_stopping") else 1


def _model_facts(m: GPTConfig) -> dict[str, Any]:
    return {"n_layers": m.n_layers, "d_model": m.d_model, "dropout": m.dropout, "n_heads": m.n_heads}


def _write_report(logdir: str):
    from trainvitals.report import write_report
    return write_report(logdir)


def sample(snapshot_path: str, prompt: str, max_new_tokens: int = 200, temperature: float = 0.8,
           seed: int = 0) -> str:
    state = snap.read_snapshot(snapshot_path)
    if state.get("run_info", {}).get("task") != "lm" or not state.get("model_config"):
        raise ConfigError(f"snapshot={snapshot_path!r}: not a train-lm snapshot")
    model = GPT(GPTConfig(**state["model_config"]))
    model.load_state_dict(state["model"])
    model.eval()
    idx = torch.tensor([list(prompt.encode("utf-8")) or [10]], dtype=torch.long)
    out = model.generate(idx, max_new_tokens, temperature, torch.Generator().manual_seed(seed))
    return bytes(out[0].tolist()).decode("utf-8", errors="replace")
