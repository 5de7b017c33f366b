"""HF's own TensorBoard log holds its TrainingArguments (text `args`) and the model's
config (`model_config`): analyze and advise read the LR that was set, the clip HF
applied and the model's dropout from them, never a value the run did not have."""
import json
import math

from torch.utils.tensorboard import SummaryWriter

from trainvitals.advise.command import advise
from trainvitals.analyze.command import analyze
from trainvitals.analyze.host_settings import hf_settings
from trainvitals.analyze.replay import AnalyzeConfig

ARGS = {"learning_rate": 1e-3, "max_grad_norm": 1.0, "warmup_steps": 0, "warmup_ratio": 0.0, "weight_decay": 0.0,
        "label_smoothing_factor": 0.0, "num_train_epochs": 3, "max_steps": -1, "lr_scheduler_type": "linear",
        "seed": 42, "output_dir": "out"}
MODEL = {"model_type": "gpt2", "n_embd": 64, "n_layer": 4, "resid_pdrop": 0.1, "embd_pdrop": 0.1,
         "attn_pdrop": 0.1, "initializer_range": 0.02, "vocab_size": 256}


def _hf_log(d, args=ARGS):
    """The tags and texts HF's TensorBoardCallback writes, for a run whose loss spikes at step 60."""
    w = SummaryWriter(str(d))
    w.add_text("args", json.dumps(args))
    w.add_text("model_config", json.dumps(MODEL))
    for step in range(1, 101):
        loss = max(1.0, 5.0 - 0.2 * step) + 0.01 * math.sin(step) + (4.0 if step == 60 else 0.0)
        w.add_scalar("train/loss", loss, step)
        w.add_scalar("train/learning_rate", 1e-3 * (1 - step / 100), step)  # linear decay: not what was set
    w.close()


def test_hf_settings_come_from_the_args_and_model_config():
    s = hf_settings({"args": json.dumps(ARGS), "model_config": json.dumps(MODEL)})
    assert s == {"host": "hf", "lr": 1e-3, "gradient_clip": 1.0, "weight_decay": 0.0, "label_smoothing": 0.0,
                 "epochs": 3, "scheduler": "linear", "max_steps": -1, "seed": 42, "d_model": 64, "n_layers": 4,
                 "dropout": 0.1, "init_std": 0.02, "vocab_size": 256, "warmup_steps": 0}
    ratio = hf_settings({"args": json.dumps({**ARGS, "warmup_ratio": 0.1, "max_steps": 500})})
    assert ratio["warmup_steps"] == 50  # as HF's get_warmup_steps: ceil(0.1 * 500)
    assert hf_settings({"args": json.dumps({**ARGS, "max_grad_norm": 0.0})})["gradient_clip"] == 0.0
    assert hf_settings({"args": "not json"}) == {}


def test_analyze_names_the_set_lr_and_the_clip_hf_applied(tmp_path, capsys):
    _hf_log(tmp_path)
    analyze(str(tmp_path), AnalyzeConfig(), as_json=True)
    events = json.loads(capsys.readouterr().out)["events"]
    spike = next(e for e in events if e["kind"] == "loss_spike" and e["severity"] == "alert")
    assert spike["suggestions"][0].startswith("Reduce learning rate: 1.0e-03 → 5.0e-04 (now 4.0e-04")
    assert "Tighten gradient clipping: 1.0 → 0.7" in spike["suggestions"]
    assert not any("Enable gradient clipping" in s for e in events for s in e["suggestions"])
    assert spike["changes"][:2] == [{"lr": 5.0e-4}, {"gradient_clip": 0.7}]


def test_advise_prints_the_flags_an_hf_example_script_takes(tmp_path, capsys):
    _hf_log(tmp_path)
    assert advise(str(tmp_path)) == 3
    out = capsys.readouterr().out
    assert "Reduce learning rate: 1.0e-03 → 5.0e-04" in out and "/2" in out  # a late spike (60% in)
    assert "--learning_rate 0.0005" in out
    assert advise(str(tmp_path), as_json=True) == 3
    data = json.loads(capsys.readouterr().out)
    assert data["change"] == {"lr": 5.0e-4} and data["host"] == "hf"
    assert data["host_settings"] == ["--learning_rate 0.0005"]
    assert math.isclose(data["evidence"][0]["values"]["loss"], 5.0 + 0.01 * math.sin(60), rel_tol=1e-5)
