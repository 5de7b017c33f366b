"""An HF run resumed with HF's defaults (`restore_callback_states_from_checkpoint=False`)
continues trainvitals where the checkpoint left it: the steps, the EMA, the drift history
and every other detector's state, as if it had never stopped."""
import math

import pytest

pytest.importorskip("transformers")
from trainvitals.analyze.readers import read_run  # noqa: E402
from trainvitals.integrations.transformers import TrainvitalsCallback  # noqa: E402
from test_transformers import train  # noqa: E402


def flat(state, prefix=""):
    """Every leaf of a nested state dict, keyed by its path."""
    if isinstance(state, dict):
        return {k: v for key, sub in state.items() for k, v in flat(sub, f"{prefix}{key}/").items()}
    if isinstance(state, (list, tuple)):
        return {k: v for i, sub in enumerate(state) for k, v in flat(sub, f"{prefix}{i}/").items()}
    return {prefix.rstrip("/"): state}


@pytest.fixture(autouse=True)
def one_tensorboard_run(tmp_path, monkeypatch):
    """Both halves of a resumed run write one TensorBoard run, HF's figures and ours."""
    monkeypatch.setenv("TENSORBOARD_LOGGING_DIR", str(tmp_path / "tb"))


def steps(series, tag):
    return [step for step, _ in series[tag]]


def test_resume_with_hf_defaults_continues_the_detectors_exactly(tmp_path):
    straight = TrainvitalsCallback()
    trainer, _ = train(tmp_path / "a", straight, 12)
    trainer.train()

    trainer, _ = train(tmp_path / "b", TrainvitalsCallback(), 12)
    trainer.args.max_steps = 6  # stop at the checkpoint, as a crash would (constant LR: the same steps)
    trainer.train()
    resumed = TrainvitalsCallback()
    trainer, args = train(tmp_path / "b", resumed, 12)
    assert args.restore_callback_states_from_checkpoint is False  # HF's default
    trainer.train(resume_from_checkpoint=str(tmp_path / "b" / "checkpoint-6"))

    # our steps continue as HF's do (not 1..6 twice), in the TensorBoard run both halves write
    s = read_run(tmp_path / "tb").series
    assert steps(s, "train/step_loss") == steps(s, "train/loss") == list(range(1, 13))
    # every detector's state equals the uninterrupted run's: EMA, drift history, jump medians, ...
    want, got = flat(straight.saved_state), flat(resumed.saved_state)
    assert got.keys() == want.keys() and got["step"] == 12
    for key, value in want.items():
        if isinstance(value, float) and not math.isnan(value):
            assert got[key] == pytest.approx(value, rel=1e-5, abs=1e-9), key
        elif not isinstance(value, float):
            assert got[key] == value, key


def test_resume_from_a_checkpoint_without_our_state_continues_the_steps(tmp_path, capsys):
    trainer, _ = train(tmp_path, TrainvitalsCallback(), 12)
    trainer.remove_callback(TrainvitalsCallback)  # a run that trained without trainvitals
    trainer.args.max_steps = 6
    trainer.train()
    cb = TrainvitalsCallback()
    trainer, _ = train(tmp_path, cb, 12)
    trainer.train(resume_from_checkpoint=str(tmp_path / "checkpoint-6"))  # saves checkpoint-12 too
    s = read_run(tmp_path / "tb").series
    assert steps(s, "train/step_loss") == list(range(7, 13)) and steps(s, "train/loss") == list(range(1, 13))
    assert steps(s, "gradient_monitor/grad_norm") == [7, 10]  # its first step, then every 3rd
    assert "resuming at step 6 from a checkpoint without trainvitals' state" in capsys.readouterr().out
    assert (tmp_path / "checkpoint-12" / "trainer_state.json").is_file()
