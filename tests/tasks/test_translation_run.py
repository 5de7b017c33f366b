"""`trainvitals train-translation` end to end: it learns, and reports encoder/decoder gains."""
from helpers import run_cli, tb_scalars


def test_translation_trains_and_accuracy_rises(tmp_path):
    proc = run_cli("train-translation", "--epochs", "3", "--steps-per-epoch", "40", "--n-val", "200",
                   "--logdir", str(tmp_path), "--no-progress-bar")
    tb = tb_scalars(tmp_path)
    acc = [v for _, v in tb["val/token_accuracy"]]
    assert len(acc) == 3 and acc[-1] > acc[0] + 0.10, acc
    val = [v for _, v in tb["val/loss"]]
    assert val[-1] < val[0]
    blocks = {t.split("/")[-1] for t in tb if t.startswith("gradient_monitor/gain/")}
    assert blocks == {"encoder.0", "encoder.1", "decoder.0", "decoder.1"}
    assert "greedy translations" in proc.stdout and "ref '" in proc.stdout
