#!/bin/bash
# run.sh NAME LR WARMUP STEPS: HF's run_clm.py, unmodified, GPT-2 from a config, the local tokenizer and text
# run from the scratch directory holding run_clm.py, tok/, train.txt, validation.txt, accuracy/
name=$1; lr=$2; warmup=$3; steps=$4
HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 OMP_NUM_THREADS=1 PYTHONPATH=${DEPS:-} \
python run_clm.py --model_type gpt2 --tokenizer_name tok \
  --config_overrides "n_layer=2,n_embd=64,n_head=4,n_positions=128,vocab_size=1024,bos_token_id=0,eos_token_id=0" \
  --train_file train.txt --validation_file validation.txt --block_size 64 \
  --do_train --do_eval --per_device_train_batch_size 8 --per_device_eval_batch_size 16 --max_eval_samples 64 \
  --learning_rate $lr --warmup_steps $warmup --lr_scheduler_type ${SCHED:-cosine} --max_steps $steps \
  --logging_steps 1 --eval_strategy steps --eval_steps 100 --save_strategy no --report_to tensorboard \
  --use_cpu --seed ${SEED:-1} --output_dir runs/$name > runs_$name.log 2>&1
