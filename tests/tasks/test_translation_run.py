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


def test_translation_resume_equals_uninterrupted(tmp_path):
    from helpers import jsonl_scalars
    tiny = ["--d-model", "32", "--n-train", "2000", "--n-val", "50", "--epochs", "2", "--steps-per-epoch", "6",
            "--lr-decay-steps", "12", "--no-progress-bar", "--log-every", "4"]
    run_cli("train-translation", *tiny, "--logdir", str(tmp_path / "straight"))
    run_cli("train-translation", *tiny, "--max-steps", "8", "--logdir", str(tmp_path / "split"))
    run_cli("train-translation", "--resume", "--logdir", str(tmp_path / "split"), "--max-steps", "12",
            "--no-progress-bar")
    a, b = jsonl_scalars(tmp_path / "straight" / "metrics.jsonl"), jsonl_scalars(tmp_path / "split" / "metrics.jsonl")
    for tag in ("train/step_loss", "val/loss", "val/token_accuracy"):
        assert [s for s, _ in a[tag]] == [s for s, _ in b[tag]], tag
        for (_, x), (_, y) in zip(a[tag], b[tag]):
            assert abs(x - y) <= 1e-6 * max(1.0, abs(x)), (tag, x, y)
