"""A LoRA fine-tune (the real `peft`) under the HF callback: the frozen base weights are
intentional, and block 0, whose input (the frozen embeddings) has no gradient, has no
gain: said once, never logged as NaN, in no aggregate."""
import math

import pytest

pytest.importorskip("transformers")
peft = pytest.importorskip("peft")
from transformers import Trainer, TrainingArguments  # noqa: E402

from trainvitals.analyze.readers import read_run  # noqa: E402
from trainvitals.integrations.transformers import TrainvitalsCallback  # noqa: E402
from test_transformers import data, gpt2  # noqa: E402

BLOCKS = [f"base_model.model.transformer.{i}" for i in range(3)]


def test_lora_fine_tune_says_once_that_block_0_has_no_gain(tmp_path):
    model = peft.get_peft_model(gpt2(), peft.LoraConfig(r=4, target_modules=["c_attn"], task_type="CAUSAL_LM"))
    cb = TrainvitalsCallback()
    args = TrainingArguments(str(tmp_path), max_steps=8, per_device_train_batch_size=8, logging_steps=1,
                             report_to=["tensorboard"], use_cpu=True, learning_rate=1e-3, disable_tqdm=True,
                             save_strategy="no")
    Trainer(model=model, args=args, train_dataset=data(), callbacks=[cb]).train()

    kinds = [e.kind for e in cb.events]
    assert kinds.count("gain_not_measurable") == 1 and kinds.count("intentionally_frozen") == 1
    (event,) = [e for e in cb.events if e.kind == "gain_not_measurable"]
    assert event.values["blocks"] == BLOCKS[:1] and event.step == 1
    assert not any(e.severity == "alert" or e.kind == "frozen_parameters" for e in cb.events)

    (run,) = (tmp_path / "runs").iterdir()
    s = read_run(run).series
    gains = {tag for tag in s if tag.startswith("gradient_monitor/gain/")}
    assert gains == {f"gradient_monitor/gain/{b}" for b in BLOCKS[1:]}  # steps 1, 4, 7 measured
    logged = [v for tag, points in s.items() if tag.startswith("gradient_monitor/") for _, v in points]
    assert logged and all(math.isfinite(v) for v in logged)
    # the aggregates are those of the measured blocks alone
    inner = [[v for _, v in s[f"gradient_monitor/gain/{b}"]] for b in BLOCKS[1:]]
    assert [v for _, v in s["gradient_monitor/mean_gain_all"]] == pytest.approx([sum(g) / 2 for g in zip(*inner)])
    assert [v for _, v in s["gradient_monitor/amplification"]] == pytest.approx([a * b for a, b in zip(*inner)])
