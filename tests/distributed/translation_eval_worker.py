"""Validate one seeded translation model: under torchrun each rank takes its rows, alone
it takes them all. Rank 0 prints `loss accuracy rows-of-rank-0 rows-of-rank-1 ...`."""
import sys

import torch

from trainvitals import distributed as dist
from trainvitals.tasks.translation.data import TranslationDataConfig, load_translation_data
from trainvitals.tasks.translation.decode import evaluate
from trainvitals.tasks.translation.model import TranslationModelConfig, TranslationTransformer

dist.init_from_env()
torch.manual_seed(0)
data = load_translation_data(TranslationDataConfig(n_train=50, n_val=int(sys.argv[1])))
model = TranslationTransformer(TranslationModelConfig(d_model=32, n_heads=2, n_encoder_layers=1, n_decoder_layers=1))
rows = [0]
model.register_forward_pre_hook(lambda module, args: rows.__setitem__(0, rows[0] + len(args[0])))
loss, accuracy = evaluate(model, data, batch_size=int(sys.argv[2]))
seen = dist.gather_objects(rows[0]) if dist.active() else rows
if dist.is_main():
    print(f"{loss!r} {accuracy!r}", *seen)
dist.shutdown()
