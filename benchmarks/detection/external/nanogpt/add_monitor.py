"""Write train_tv.py: nanoGPT's train.py with trainvitals.Monitor added where the README says
(after_backward before the clip, step_end after the step, evaluate() at each eval_interval), plus a --seed."""
import re
s = open("train.py").read()
def sub(old, new):
    global s
    assert s.count(old) == 1, old
    s = s.replace(old, new)
sub("compile = True # use PyTorch", "seed = 1337\ncompile = True # use PyTorch")
sub("torch.manual_seed(1337 + seed_offset)", "torch.manual_seed(seed + seed_offset)")
sub("# training loop\n", """# training loop
import json
from trainvitals import Monitor, MonitorConfig
from trainvitals.sinks.base import SinkHub
from trainvitals.sinks.jsonl import JSONLSink
tv_sinks = SinkHub([JSONLSink(os.path.join(out_dir, 'metrics.jsonl'))])
monitor = Monitor(model, optimizer, MonitorConfig(), sinks=tv_sinks,
                  run_info={"lr": learning_rate, "warmup_steps": warmup_iters, "gradient_clip": grad_clip})
""")
sub("    # clip the gradient\n", "    monitor.after_backward()\n    # clip the gradient\n")
sub("    optimizer.zero_grad(set_to_none=True)\n",
    "    optimizer.zero_grad(set_to_none=True)\n    monitor.step_end(loss * gradient_accumulation_steps)\n")
sub("""        print(f"step {iter_num}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}")\n""",
    """        print(f"step {iter_num}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}")
        if iter_num > 0:
            monitor.evaluate(float(losses['val']))\n""")
sub("""    if iter_num > max_iters:\n        break\n""", """    if iter_num > max_iters or monitor.stop_reason:\n        break\n
monitor.close()
tv_sinks.close()
with open(os.path.join(out_dir, 'events.jsonl'), 'w') as f:
    f.writelines(json.dumps({"type": "event", **e.to_dict()}) + "\\n" for e in monitor.events)
""")
open("train_tv.py", "w").write(s)
