import json
import math
import random

import pandas as pd
import pytest

from trainvitals.errors import ConfigError
from trainvitals.signals.ema import LossEMA


def _run(ema, xs):
    return [ema.update(x) for x in xs]


@pytest.mark.parametrize("init,adjust", [("debiased", True), ("first", False)])
@pytest.mark.parametrize("alpha", [0.9, 0.99, 0.999])
def test_matches_pandas_ewm(init, adjust, alpha):
    rng = random.Random(7)
    xs = [rng.uniform(0.5, 5.0) for _ in range(1000)]
    ours = _run(LossEMA(alpha, init), xs)
    ref = pd.Series(xs).ewm(alpha=1 - alpha, adjust=adjust).mean().tolist()
    for a, b in zip(ours, ref):
        assert a == pytest.approx(b, rel=1e-12)


@pytest.mark.parametrize("init", ["debiased", "first"])
def test_first_value_is_first_loss(init):
    ema = LossEMA(0.99, init)
    assert ema.value is None
    assert ema.update(2.718281828) == 2.718281828
    assert ema.value == 2.718281828 and ema.count == 1


@pytest.mark.parametrize("init", ["debiased", "first"])
def test_variance_around_trend_under_ten_percent(init):
    # The seed's success metric: the EMA line has <10% of the raw loss variance.
    rng = random.Random(3)
    n = 10_000
    trend = [3 * math.exp(-t / 2000) for t in range(n)]
    raw = [m + rng.gauss(0, 0.3) for m in trend]
    ema = _run(LossEMA(0.99, init), raw)
    var_raw = sum((x - m) ** 2 for x, m in zip(raw, trend)) / n
    var_ema = sum((x - m) ** 2 for x, m in zip(ema, trend)) / n
    assert var_ema < 0.10 * var_raw


def test_seed_direction_would_not_smooth():
    # DESIGN departure 1: the seed's formula with alpha=0.99 barely smooths at all,
    # so the smoothing above really comes from treating alpha as the decay.
    rng = random.Random(3)
    raw = [2.0 + rng.gauss(0, 0.3) for _ in range(2000)]
    seed_ema, out = raw[0], []
    for x in raw:
        seed_ema = 0.99 * x + 0.01 * seed_ema
        out.append(seed_ema)
    ours = _run(LossEMA(0.99), raw)
    var = lambda v: sum((x - 2.0) ** 2 for x in v[200:]) / len(v[200:])  # noqa: E731
    assert var(out) > 0.9 * var(raw)
    assert var(ours) < 0.1 * var(raw)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("init", ["debiased", "first"])
def test_nonfinite_loss_is_not_folded_in(bad, init):
    ema = LossEMA(0.9, init)
    assert ema.update(bad) is None  # nothing finite seen yet
    ema.update(2.0)
    ema.update(1.0)
    before = ema.value
    assert ema.update(bad) == before
    assert ema.value == before and ema.count == 2
    after = ema.update(1.5)
    assert math.isfinite(after)
    # Same as if the bad loss had never arrived.
    assert after == _run(LossEMA(0.9, init), [2.0, 1.0, 1.5])[-1]


@pytest.mark.parametrize("alpha", [0, 1, -0.1, 1.5, math.nan, math.inf, "0.9", True])
def test_bad_alpha_rejected(alpha):
    with pytest.raises(ConfigError, match="ema_alpha"):
        LossEMA(alpha)


def test_bad_init_rejected():
    with pytest.raises(ConfigError, match="ema_init") as exc:
        LossEMA(0.99, "bogus")
    assert "debiased" in str(exc.value) and "first" in str(exc.value)


@pytest.mark.parametrize("init", ["debiased", "first"])
def test_resume_from_state_equals_uninterrupted(init):
    rng = random.Random(11)
    xs = [rng.uniform(1, 3) for _ in range(300)]
    xs[120] = math.nan
    whole = _run(LossEMA(0.98, init), xs)

    first = LossEMA(0.98, init)
    _run(first, xs[:150])
    state = json.loads(json.dumps(first.state_dict()))  # must survive JSON
    resumed = LossEMA(0.98, init)
    resumed.load_state_dict(state)
    assert resumed.count == first.count
    assert _run(resumed, xs[150:]) == whole[150:]


def test_fresh_state_round_trip():
    ema = LossEMA()
    other = LossEMA()
    other.load_state_dict(json.loads(json.dumps(ema.state_dict())))
    assert other.value is None and other.update(4.0) == 4.0
