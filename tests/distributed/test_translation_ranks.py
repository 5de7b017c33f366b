"""Translation validation under torchrun (2 CPU processes, gloo): each rank scores its rows
of every validation batch and the sums are reduced, so the figures are one process's."""
import pytest
from launch import HERE, single, torchrun

WORKER = str(HERE / "translation_eval_worker.py")


@pytest.mark.parametrize("n_val,batch_size", [(101, 16), (33, 33)])  # uneven rows; one batch of odd size
def test_two_ranks_validate_what_one_process_validates(n_val, batch_size):
    one = single(WORKER, str(n_val), str(batch_size)).stdout.split()
    two = torchrun(WORKER, str(n_val), str(batch_size)).stdout.split()
    assert one[2:] == [str(n_val)]
    assert two[2:] == [str((n_val + 1) // 2), str(n_val // 2)]  # each rank scored its rows only
    loss, accuracy = map(float, one[:2])
    assert float(two[0]) == pytest.approx(loss, rel=1e-6)  # fp32 logits of other batch shapes
    assert float(two[1]) == pytest.approx(accuracy, rel=1e-9)
