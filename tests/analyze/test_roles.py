"""`analyze` on other trainers' logs: HF `Trainer` (TensorBoard and trainer_state.json),
`--tag ROLE=TAG` for any other writer, a log it cannot use, and the logging cadence."""
import io
import json
import pytest
from torch.utils.tensorboard import SummaryWriter

from trainvitals.analyze.command import analyze
from trainvitals.analyze.replay import AnalyzeConfig
from trainvitals.cli import main

# the first 30 step losses of a real healthy train-lm run (lr 2e-3, no warmup)
HEALTHY = [5.545, 5.444, 5.295, 5.28, 5.148, 5.078, 4.955, 4.959, 4.802, 4.713, 4.648, 4.524, 4.498,
           4.384, 4.399, 4.463, 4.29, 4.161, 4.15, 3.953, 4.03, 3.98, 3.82, 3.76, 3.79, 3.71, 3.66,
           3.70, 3.58, 3.55]
# and of one at lr 1.0 (no warmup)
FAILING = [5.55, 20.08, 51.8, 29.6, 75.35, 39.86, 35.04, 57.83, 43.43, 33.63] + HEALTHY[10:]


def _json(path, *tags, cfg=None):
    out = io.StringIO()
    assert analyze(str(path), cfg or AnalyzeConfig(), as_json=True, out=out, tags=list(tags)) == 0
    return json.loads(out.getvalue())


def _alerts(result):
    return [(e["kind"], e["step"]) for e in result["events"] if e["severity"] == "alert"]


def _hf_log(path, losses, steps_per_epoch=10, logging_steps=1):
    """What HF's TensorBoardCallback writes: train/<key> at HF's 1-based global_step,
    epoch as progress (1.0 at the last step of epoch 0), eval/loss at each epoch end."""
    with SummaryWriter(str(path)) as w:
        for step in range(logging_steps, len(losses) + 1, logging_steps):
            chunk = losses[step - logging_steps:step]
            epoch = step / steps_per_epoch
            w.add_scalar("train/loss", sum(chunk) / len(chunk), step)
            w.add_scalar("train/grad_norm", 1.0, step)
            w.add_scalar("train/learning_rate", 2e-3, step)
            w.add_scalar("train/epoch", epoch, step)
            if step % steps_per_epoch == 0:
                w.add_scalar("eval/loss", chunk[-1] - 0.05, step)
                w.add_scalar("train/epoch", epoch, step)


def test_an_hf_tensorboard_log_is_read_with_hf_names_and_step_numbers(tmp_path):
    _hf_log(tmp_path / "hf", HEALTHY)
    out = _json(tmp_path / "hf")
    assert _alerts(out) == []
    assert [s for s, _ in out["series"]["train/step_loss_ema"]] == list(range(1, 31))
    # train/epoch turned the step losses into epoch losses at each epoch's last step
    assert [s for s, _ in out["series"]["evaluation/train_val_gap"]] == [10, 20, 30]
    _hf_log(tmp_path / "bad", FAILING)
    assert ("loss_above_init", 2) in _alerts(_json(tmp_path / "bad"))


def test_hf_trainer_state_json_reads_like_its_tensorboard_log(tmp_path):
    history = [{"loss": x, "grad_norm": 1.0, "learning_rate": 2e-3, "epoch": s / 10, "step": s}
               for s, x in enumerate(FAILING, 1)]
    history += [{"eval_loss": FAILING[s - 1] - 0.05, "eval_runtime": 0.1, "epoch": s / 10, "step": s}
                for s in (10, 20, 30)]
    history.append({"train_runtime": 2.0, "train_loss": 20.0, "epoch": 3.0, "step": 30})
    ckpt = tmp_path / "out" / "checkpoint-30"
    ckpt.mkdir(parents=True)
    (ckpt / "trainer_state.json").write_text(json.dumps({"global_step": 30, "log_history": history}))
    (tmp_path / "out" / "checkpoint-20").mkdir()  # an older checkpoint holds less
    (tmp_path / "out" / "checkpoint-20" / "trainer_state.json").write_text(
        json.dumps({"log_history": history[:20]}))
    _hf_log(tmp_path / "tb", FAILING)
    def found(result):  # TensorBoard stores float32, the JSON float64: compare what was found
        return [(e["kind"], e["severity"], e["step"], e["epoch"]) for e in result["events"]]
    from_tb = found(_json(tmp_path / "tb"))
    assert ("loss_above_init", "alert", 2, None) in from_tb
    for path in (ckpt / "trainer_state.json", ckpt, tmp_path / "out"):
        from_state = _json(path)
        assert found(from_state) == from_tb, path
        assert from_state["series"]["train/step_loss_ema"][-1][0] == 30


def test_tag_maps_another_writers_names(tmp_path):
    # a Lightning-style log: the user's names, epoch as a 0-based index, 0-based steps
    with SummaryWriter(str(tmp_path / "pl")) as w:
        for i, x in enumerate(FAILING):
            w.add_scalar("train_loss", x, i)
            w.add_scalar("epoch", i // 10, i)
            if i % 10 == 9:
                w.add_scalar("val_loss", x, i)
    out = _json(tmp_path / "pl", "step_loss=train_loss", "val_loss=val_loss", "epoch=epoch")
    assert ("loss_above_init", 1) in _alerts(out)
    # every val loss is an evaluation, that of the last epoch too (its epoch loss cannot be told complete)
    assert [s for s, _ in out["series"]["evaluation/train_val_gap"]] == [9, 19, 29]


def test_a_log_with_no_usable_tag_is_one_line_naming_its_tags_and_exit_2(tmp_path, capsys):
    with SummaryWriter(str(tmp_path / "x")) as w:
        for i, x in enumerate(HEALTHY):
            w.add_scalar("train_loss", x, i)
            w.add_scalar("acc", 0.5, i)
    assert main(["analyze", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "acc, train_loss" in err and "--tag ROLE=TAG" in err and "--tag step_loss=" in err
    assert main(["analyze", str(tmp_path / "x"), "--tag", "step_loss=train_loss"]) == 0


def test_an_unknown_role_lists_the_valid_ones(tmp_path, capsys):
    _hf_log(tmp_path / "hf", HEALTHY)
    assert main(["analyze", str(tmp_path / "hf"), "--tag", "steploss=train/loss"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unknown role 'steploss'" in err
    assert "step_loss, lr, grad_norm, epoch_loss, val_loss, mean_gain" in err
    assert main(["analyze", str(tmp_path / "hf"), "--tag", "step_loss"]) == 2
    assert "expected ROLE=TAG" in capsys.readouterr().err


# 60 real step losses of train-lm (2 blocks, d_model 32, no warmup): lr 2e-3 and lr 1.0,
# with the failing run's largest block gain at its monitored steps (every 3rd)
HEALTHY_60 = HEALTHY[:20] + [
    4.027, 3.98, 3.823, 3.759, 3.788, 3.684, 3.62, 3.583, 3.678, 3.837, 3.672, 3.593, 3.596, 3.686, 3.606,
    3.559, 3.701, 3.346, 3.73, 3.65, 3.418, 3.504, 3.427, 3.614, 3.427, 3.468, 3.823, 3.307, 3.45, 3.605,
    3.35, 3.455, 3.633, 3.439, 3.343, 3.471, 3.291, 3.304, 3.543, 3.404]
FAILING_60 = FAILING[:10] + [
    38.53, 29.72, 26.29, 29.39, 19.34, 26.84, 24.25, 27.13, 22.86, 21.58, 29.39, 17.95, 20.0, 22.96, 20.27,
    18.46, 21.2, 13.56, 26.52, 26.54, 26.0, 20.03, 13.98, 16.95, 13.38, 11.96, 11.77, 7.42, 8.94, 7.18,
    5.97, 5.38, 4.58, 5.04, 4.4, 3.98, 3.78, 3.67, 3.89, 3.9, 3.38, 3.58, 3.86, 3.45, 3.43, 3.54, 3.24,
    3.24, 3.61, 3.43]
FAILING_MAX_GAIN = [(1, 1.1), (4, 332.7), (7, 447.6), (10, 907.2), (13, 673.1), (16, 1634.3), (19, 475.1)]


def _loss_csv(path, losses):
    path.write_text("step,train/step_loss\n" + "".join(f"{s},{v}\n" for s, v in losses))
    return path


def _means(losses, n):
    return [(i + n, sum(losses[i:i + n]) / n) for i in range(0, len(losses) - n + 1, n)]


def test_cadence_ten_step_means_of_a_healthy_run_raise_nothing(tmp_path):
    for losses in (HEALTHY_60, HEALTHY):
        assert _alerts(_json(_loss_csv(tmp_path / "h1.csv", enumerate(losses, 1)))) == []
        assert _alerts(_json(_loss_csv(tmp_path / "h10.csv", _means(losses, 10)))) == []


def test_cadence_a_failing_run_in_ten_step_means(tmp_path):
    per_step = _alerts(_json(_loss_csv(tmp_path / "f1.csv", enumerate(FAILING_60, 1))))
    assert per_step[:2] == [("loss_above_init", 2), ("early_loss_jump", 2)]
    # the first 10-step mean already averages the failure: the loss rules see nothing
    # without ln(vocab) (EarlyLossDetector's uniform_loss) ...
    assert _alerts(_json(_loss_csv(tmp_path / "f10.csv", _means(FAILING_60, 10)))) == []
    # ... while the gains the trainer logged beside them still flag it at their second check
    with SummaryWriter(str(tmp_path / "mixed")) as w:
        for s, v in _means(FAILING_60, 10):
            w.add_scalar("train/step_loss", v, s)
        for s, v in FAILING_MAX_GAIN:
            w.add_scalar("gradient_monitor/max_gain", v, s)
            w.add_scalar("gradient_monitor/grad_norm", 2.0, s)
    assert ("max_gain_jump", 4) in _alerts(_json(tmp_path / "mixed"))


def test_cadence_ten_step_means_are_judged_against_the_uniform_loss_when_it_is_known(tmp_path):
    means = _means(FAILING_60, 10)  # the first point, 39.2, already averages the failure
    csv = _loss_csv(tmp_path / "f10.csv", means)
    assert _alerts(_json(csv)) == []
    # given (`--uniform-loss`, ln 256) or read from HF's logged model config (vocab_size)
    (event,) = [e for e in _json(csv, cfg=AnalyzeConfig(uniform_loss=5.545))["events"]
                if e["severity"] == "alert"]
    assert (event["kind"], event["step"]) == ("loss_above_init", 10)
    assert "worse than untrained" in event["message"]  # a mean of 10 updates: not the initial weights
    with SummaryWriter(str(tmp_path / "hf")) as w:
        w.add_text("model_config", '{"vocab_size": 256, "n_layer": 2}', 0)
        for st, v in means:
            w.add_scalar("train/loss", v, st)
    assert _alerts(_json(tmp_path / "hf"))[:1] == [("loss_above_init", 10)]
    # a healthy run's 10-step means stay far below 1.5x the uniform loss
    healthy = _loss_csv(tmp_path / "h10.csv", _means(HEALTHY_60, 10))
    assert _alerts(_json(healthy, cfg=AnalyzeConfig(uniform_loss=5.545))) == []


def test_cadence_ten_step_means_are_judged_in_steps(tmp_path):
    # a loss that falls for 100 steps, then doubles and stays there: the EMA, the
    # divergence patience and the spike history count steps, so its 10-step means must
    # give the divergence within one logging interval of the per-step log, not 10x later
    losses = [3.0 - 0.01 * s for s in range(100)] + [4.0] * 150
    per_step = dict(_alerts(_json(_loss_csv(tmp_path / "d1.csv", enumerate(losses, 1)))))
    means = dict(_alerts(_json(_loss_csv(tmp_path / "d10.csv", _means(losses, 10)))))
    assert "loss_divergence" in per_step
    assert per_step["loss_divergence"] <= means["loss_divergence"] <= per_step["loss_divergence"] + 10
    # the EMA of the means is stamped at the logged steps only
    ema = _json(_loss_csv(tmp_path / "d10.csv", _means(losses, 10)))["series"]["train/step_loss_ema"]
    assert [s for s, _ in ema] == list(range(10, 251, 10))


def _hf_trainer_run(out_dir, lr):
    transformers = pytest.importorskip("transformers")
    import torch

    class Tokens(torch.utils.data.Dataset):
        def __init__(self, n):
            self.x = torch.randint(0, 64, (n, 32), generator=torch.Generator().manual_seed(0))

        def __len__(self):
            return len(self.x)

        def __getitem__(self, i):
            return {"input_ids": self.x[i], "labels": self.x[i]}

    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=64, n_positions=32)
    args = transformers.TrainingArguments(
        output_dir=str(out_dir), max_steps=30, per_device_train_batch_size=8, learning_rate=lr,
        logging_steps=1, report_to=["tensorboard"], use_cpu=True, save_strategy="steps", save_steps=30,
        eval_strategy="epoch", disable_tqdm=True, seed=0)
    transformers.Trainer(model=transformers.GPT2LMHeadModel(cfg), args=args, train_dataset=Tokens(80),
                         eval_dataset=Tokens(16)).train()


def test_a_real_hf_trainer_run(tmp_path):
    # one run at a too-high LR (HF's default linear decay, no warmup); a healthy HF log is
    # the SummaryWriter one above. 80 samples of 8: 3 epochs of 10 steps.
    pytest.importorskip("transformers")
    _hf_trainer_run(tmp_path / "bad", 1.0)
    bad = _json(tmp_path / "bad")
    assert [s for s, _ in bad["series"]["train/step_loss_ema"]] == list(range(1, 31))
    assert [s for s, _ in bad["series"]["evaluation/train_val_gap"]] == [10, 20, 30]
    assert _alerts(bad)[:2] == [("loss_above_init", 2), ("early_loss_jump", 2)]
    state = _json(tmp_path / "bad" / "checkpoint-30")  # HF saves it before the last evaluation
    assert [(e["kind"], e["step"]) for e in state["events"] if e["source"] != "evaluation"] == [
        (e["kind"], e["step"]) for e in bad["events"] if e["source"] != "evaluation"]


def test_a_log_of_ours_that_ended_before_its_first_loss_is_not_told_to_map_tags(tmp_path):
    with SummaryWriter(str(tmp_path / "r")) as w:
        w.add_scalar("data/unigram_entropy", 3.26, 0)  # the trainer's first write
    out = _json(tmp_path / "r")
    assert out["events"] == [] and out["series"] == {}
