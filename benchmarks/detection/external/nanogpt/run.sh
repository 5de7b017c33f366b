#!/bin/bash
# nanoGPT's train.py with trainvitals.Monitor (add_monitor.py), from a scratch copy: run.sh NAME FLAGS...
# 4 layers, 128 wide, char-level on the pydoc topics text (prepare.py), CPU, float32, 300 iterations.
set -e
name=$1; shift
OMP_NUM_THREADS=1 python train_tv.py config/train_shakespeare_char.py \
  --dataset=pydoc_char --out_dir=runs/$name --device=cpu --compile=False --dtype=float32 \
  --n_layer=4 --n_head=4 --n_embd=128 --block_size=64 --batch_size=12 --dropout=0.0 \
  --max_iters=300 --lr_decay_iters=300 --eval_interval=50 --eval_iters=10 --log_interval=50 \
  --always_save_checkpoint=False "$@" > runs/$name.log 2>&1
