"""Train one benchmark run into its own log directory (TensorBoard + metrics.jsonl)."""
from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import torch

from trainvitals.config import TrainerConfig
from trainvitals.sinks.base import SinkHub
from trainvitals.sinks.jsonl import JSONLSink
from trainvitals.sinks.tensorboard import TensorBoardSink
from trainvitals.training.rng import seed_everything

from faults import CorruptBatch, LossScaleOverflow, NoisyLabels, optimizer_without_block
from scenarios import RunSpec

__all__ = ["generate", "SPEC_FILE"]

SPEC_FILE = "spec.json"
_VAL_BYTES = 40_000  # validation text: the tail of the corpus, enough for a stable val loss


def generate(spec: RunSpec, root: Path, force: bool = False) -> Path:
    """Train `spec` into root/<name>; a finished run is kept unless `force`."""
    logdir = root / spec.name
    done = logdir / SPEC_FILE
    if done.exists() and not force:
        return logdir
    if logdir.exists():
        for f in sorted(logdir.rglob("*"), reverse=True):
            f.unlink() if f.is_file() else f.rmdir()
    logdir.mkdir(parents=True, exist_ok=True)
    # one thread: the same numbers on any machine with this torch, and no threads
    # spinning against each other on a shared one (2 threads on 2 loaded cores ran 20x slower)
    torch.set_num_threads(1)
    seed_everything(spec.seed)
    t0 = time.perf_counter()
    if spec.host != "trainer":
        from host_runs import train_host
        info = {"spec": asdict(spec), **train_host(spec, logdir), "seconds": round(time.perf_counter() - t0, 1)}
        done.write_text(json.dumps(info, indent=1))
        return logdir
    trainer, train, val, unigram_entropy = _build(spec, logdir)
    try:
        reason = trainer.fit(train, val)
    finally:
        trainer.close()
    info = {"spec": asdict(spec), "stop_reason": reason.value, "steps": trainer.global_step,
            "seconds": round(time.perf_counter() - t0, 1), "unigram_entropy": unigram_entropy,
            "n_layers": spec.model.get("n_layers") or spec.model.get("n_encoder_layers")}
    done.write_text(json.dumps(info, indent=1))
    return logdir


def _build(spec: RunSpec, logdir: Path):
    if spec.task == "translation":
        from translation_runs import build_translation
        return build_translation(spec, _config(spec, logdir), _sinks(logdir))
    from trainvitals.tasks.lm.data import ByteCorpus, load_text
    from trainvitals.tasks.lm.model import GPT, GPTConfig
    from trainvitals.training.trainer import LanguageModelTrainer
    cfg = _config(spec, logdir)
    mcfg = GPTConfig(**spec.model)
    text = load_text()
    f = spec.fault
    if "label_noise" in f:
        data = NoisyLabels(text, f["train_bytes"], 10_000, mcfg.block_size, cfg.batch_size,
                           f["label_noise"], spec.seed, f.get("passes_per_epoch", 1))
    else:
        data = ByteCorpus(text, mcfg.block_size, cfg.batch_size, _VAL_BYTES / len(text), spec.seed)
    model = GPT(mcfg)
    callbacks = []  # the trainer adds its default monitors from `cfg`
    optimizer = None
    if "loss_scale" in f:
        callbacks.append(LossScaleOverflow(f["loss_scale"], f["growth_every"]))
    if "bad_step" in f:
        callbacks.append(CorruptBatch(f["bad_step"], f.get("embedding_scale", 1e30)))
    if "leave_out_block" in f:
        optimizer = optimizer_without_block(model, f["leave_out_block"], cfg.lr, cfg.weight_decay,
                                            (cfg.adam_beta1, cfg.adam_beta2))
    run_info = {"task": "lm", "unigram_entropy": data.unigram_entropy, "n_layers": mcfg.n_layers}
    trainer = LanguageModelTrainer(model, cfg, optimizer=optimizer, callbacks=callbacks, sinks=_sinks(logdir),
                                   model_config=mcfg, run_info=run_info)
    return trainer, data, data, data.unigram_entropy


def _config(spec: RunSpec, logdir: Path) -> TrainerConfig:
    values = {"device": "cpu", "seed": spec.seed, "logdir": str(logdir), "progress_bar": False,
              "keep_snapshots": 1, "log_every": 10, "on_nonfinite_loss": "stop", **spec.trainer}
    epochs = values.get("epochs", 4)
    values.setdefault("evaluation_epochs", list(range(1, epochs)))
    return TrainerConfig(**values)


def _sinks(logdir: Path) -> SinkHub:
    return SinkHub([TensorBoardSink(str(logdir)), JSONLSink(logdir / "metrics.jsonl")])
