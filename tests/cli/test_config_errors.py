"""Bad settings: one line naming the field, exit 2, no traceback."""
import pytest
from helpers import run_cli

from trainvitals.config import TrainerConfig
from trainvitals.errors import ConfigError
from trainvitals.tasks.lm.model import GPTConfig


@pytest.mark.parametrize("kwargs, match", [
    ({"lr": -1.0}, r"lr=-1.0: allowed is 0 < lr"),
    ({"ema_alpha": 1.5}, r"ema_alpha=1.5"),
    ({"batch_size": 0}, r"batch_size=0"),
    ({"precision": "fp8"}, r"precision='fp8': allowed values are 'fp32', 'bf16', 'fp16'"),
    ({"mean_gain_absolute_threshold": "big"}, r"mean_gain_absolute_threshold='big'"),
    ({"evaluation_epochs": [-1]}, r"evaluation_epochs"),
    ({"max_gain_jump_factor": 1.0}, r"max_gain_jump_factor=1.0: allowed is 1 < max_gain_jump_factor"),
])
def test_trainer_config_names_the_field(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        TrainerConfig(**kwargs)


def test_model_config_heads():
    with pytest.raises(ConfigError, match=r"d_model=30 is not divisible by n_heads=4"):
        GPTConfig(d_model=30, n_heads=4)


@pytest.mark.parametrize("args, needle", [
    (["--lr", "-1"], "lr=-1.0"),
    (["--d-model", "30", "--n-heads", "4"], "d_model=30"),
    (["--data", "/no/such/file.txt"], "data='/no/such/file.txt'"),
    (["--bogus-flag", "1"], "unrecognized arguments: --bogus-flag"),
    (["--lr", "fast"], "lr='fast'"),
    (["--resume", "/no/such.pt"], "no such file"),
])
def test_cli_rejects_bad_values(args, needle):
    proc = run_cli("train-lm", *args, check=False)
    assert proc.returncode == 2
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_toml_config_and_unknown_field(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('lr = 0.001\nlearning_rate = 3\n')
    proc = run_cli("train-lm", "--config", str(bad), check=False)
    assert proc.returncode == 2 and "unknown field 'learning_rate'" in proc.stderr


def test_help_lists_fields_with_defaults():
    out = run_cli("train-lm", "--help").stdout
    for flag in ("--max-steps", "--epochs", "--steps-per-epoch", "--lr", "--batch-size", "--logdir",
                 "--log-every", "--gradient-clip", "--n-layers", "--d-model", "--ema-alpha"):
        assert flag in out
    assert "(default: 0.99)" in out


@pytest.mark.parametrize("command", ["train-translation", "analyze", "report", "calibrate", "sample"])
def test_every_command_has_help(command):
    assert "usage: trainvitals " + command in run_cli(command, "--help").stdout
