"""A suggestion is data as well as words: the change it proposes, in host-neutral names,
agrees with its sentence and travels with the event (JSONL, analyze --json)."""
import json
import pickle

from trainvitals.events import ALERT, Event, Suggestion
from trainvitals.signals.advice import (increase_lr, learning_rate, lengthen_warmup, lower_init, reduce_lr,
                                        set_dropout, set_label_smoothing, set_weight_decay, shorten_warmup,
                                        tighten_clip)
from trainvitals.signals.divergence import LossDivergenceDetector


def test_each_helper_proposes_the_value_its_sentence_names():
    cases = [
        (reduce_lr(learning_rate(9.2e-4, 2e-3, 46, 100)), {"lr": 1.0e-3}),
        (increase_lr(1e-5, 10), {"lr": 1.0e-4}),
        (reduce_lr(3e-4, 1 / 3), {"lr": 1.0e-4}),  # rounded as shown: "1.0e-04", not 9.999e-05
        (tighten_clip(1.0), {"gradient_clip": 0.7}),
        (tighten_clip(None), {"gradient_clip": 1.0}),
        (lengthen_warmup(100), {"warmup_steps": 250}),
        (lengthen_warmup(0, 40), {"warmup_steps": 40}),
        (lengthen_warmup(0), {"warmup_steps": 100}),  # none set: our trainer's default
        (shorten_warmup(100), {"warmup_steps": 50}),
        (set_dropout(0.0), {"dropout": 0.1}),
        (set_weight_decay(0.01), {"weight_decay": 0.1}),
        (set_label_smoothing(None), {"label_smoothing": 0.1}),
        (lower_init(1.0), {"init_std": 0.02}),
    ]
    for s, change in cases:
        assert dict(s.change) == change, s
        for name, value in change.items():  # the sentence shows the proposed value
            shown = f"{value:.1e}" if name == "lr" else f"{value:g}"
            assert shown in s, (s, shown)
    assert str(set_dropout(0.0)) == "Add dropout: 0 → 0.1 in attention and FFN layers"
    assert str(set_weight_decay(0.01)) == "Increase weight decay: 0.01 → 0.1"


def test_generic_lines_propose_no_change():
    assert not reduce_lr(None).change and reduce_lr(None) == "Reduce learning rate by 0.5x"
    assert not lengthen_warmup(None).change
    assert str(lengthen_warmup(0)) == "Add warmup: none → 100 steps"


def test_extending_a_sentence_keeps_its_change_and_pickling_keeps_both():
    s = reduce_lr(2e-3) + ", and resume from a snapshot"
    assert isinstance(s, Suggestion) and dict(s.change) == {"lr": 1.0e-3}
    back = pickle.loads(pickle.dumps(s))
    assert back == s and dict(back.change) == {"lr": 1.0e-3}


def test_event_dict_carries_one_change_per_suggestion_and_round_trips():
    d = LossDivergenceDetector(patience=5)
    events = []
    for step in range(1, 61):
        loss = 3.0 - 0.02 * step if step <= 30 else 2.4 + 0.1 * (step - 30)
        events += d.update(loss, step, lr=learning_rate(2e-3, 2e-3, step, 100), gradient_clip=0.5)
    (div,) = [e for e in events if e.kind == "loss_divergence"]
    data = json.loads(json.dumps(div.to_dict()))
    assert data["suggestions"][0].startswith("Reduce learning rate: 2.0e-03 → 1.0e-03, and resume")
    assert data["changes"] == [{"lr": 1.0e-3}, {"warmup_steps": 250}, {"gradient_clip": 0.35}]
    back = Event.from_dict(data)
    assert back == div and [dict(s.change) for s in back.suggestions] == data["changes"]


def test_a_check_and_a_plain_string_have_no_change():
    e = Event("bad_batch", ALERT, "m", 3, None, ("Check the batch at step 3", tighten_clip(1.0)))
    assert e.to_dict()["changes"] == [None, {"gradient_clip": 0.7}]
    old = {"kind": "loss_spike", "severity": "alert", "suggestions": ["x"]}  # a log written before changes
    assert Event.from_dict(old).suggestions == ("x",)
