"""Benchmark runs of the translation task: the built-in EN→FR corpus, a small encoder-decoder."""
from __future__ import annotations

from trainvitals.config import TrainerConfig
from trainvitals.sinks.base import SinkHub
from trainvitals.tasks.translation.data import TranslationDataConfig, load_translation_data
from trainvitals.tasks.translation.model import TranslationModelConfig, TranslationTransformer
from trainvitals.tasks.translation.run import EpochBatches, TranslationTrainer

from scenarios import RunSpec

__all__ = ["build_translation"]


def build_translation(spec: RunSpec, cfg: TrainerConfig, sinks: SinkHub):
    """(trainer, train batches, validation data, unigram entropy of the targets)"""
    mcfg = TranslationModelConfig(**spec.model)
    data = load_translation_data(TranslationDataConfig(n_train=8_000, n_val=500, corpus_seed=spec.seed))
    run_info = {"task": "translation", "unigram_entropy": data.unigram_entropy(),
                "n_layers": mcfg.n_encoder_layers + mcfg.n_decoder_layers}
    trainer = TranslationTrainer(TranslationTransformer(mcfg), cfg, sinks=sinks, model_config=mcfg,
                                 run_info=run_info)
    return trainer, EpochBatches(data, cfg.batch_size, spec.seed), data, data.unigram_entropy()
