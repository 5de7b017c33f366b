"""Unigram entropy (nats) of the training tokens of each scratch setup, for real_scripts.py --unigram.
Run from the scratch root (e.g. /tmp/real) holding nanogpt/, lightning_demo/ and hf_clm/."""
import collections
import math

import numpy as np
from transformers import PreTrainedTokenizerFast


def entropy(ids) -> float:
    counts = collections.Counter(ids)
    n = sum(counts.values())
    return -sum(c / n * math.log(c / n) for c in counts.values())


print("nanogpt", entropy(np.fromfile("nanogpt/data/pydoc_char/train.bin", dtype=np.uint16).tolist()))
words = []  # the lightning demo's WikiText2 tokenizer: words of each line, then <eos>
for line in open("lightning_demo/data/wikitext-2.txt").read().splitlines():
    words += line.split() + ["<eos>"]
print("lightning_demo", entropy(words))
tok = PreTrainedTokenizerFast(tokenizer_file="hf_clm/tokenizer.json")
print("hf_clm", entropy([i for line in open("hf_clm/train.txt").read().splitlines(keepends=True)
                         for i in tok(line)["input_ids"]]))
