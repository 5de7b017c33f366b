"""Char-level data for nanoGPT from the Python docs' pydoc topics (offline), as shakespeare_char."""
import os, pickle
import numpy as np
from pydoc_data.topics import topics
data = "".join(topics[k] for k in sorted(topics))
chars = sorted(set(data))
stoi = {c: i for i, c in enumerate(chars)}
n = len(data)
here = os.path.dirname(__file__)
for name, part in (("train", data[:int(n * 0.9)]), ("val", data[int(n * 0.9):])):
    np.array([stoi[c] for c in part], dtype=np.uint16).tofile(os.path.join(here, f"{name}.bin"))
pickle.dump({"vocab_size": len(chars), "itos": dict(enumerate(chars)), "stoi": stoi}, open(os.path.join(here, "meta.pkl"), "wb"))
print(len(data), "chars,", len(chars), "symbols")
