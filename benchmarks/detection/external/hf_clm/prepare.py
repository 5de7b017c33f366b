"""Local text files and a byte-level BPE tokenizer trained on them (offline)."""
from pydoc_data.topics import topics
from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers
from transformers import PreTrainedTokenizerFast
text = "".join(topics[k] for k in sorted(topics))
cut = int(len(text) * 0.9)
open("train.txt", "w").write(text[:cut])
open("validation.txt", "w").write(text[cut:])
tok = Tokenizer(models.BPE())
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
tok.decoder = decoders.ByteLevel()
tok.train(["train.txt"], trainers.BpeTrainer(vocab_size=1024, special_tokens=["<|endoftext|>"],
                                              initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
tok.save("tokenizer.json")
fast = PreTrainedTokenizerFast(tokenizer_file="tokenizer.json", eos_token="<|endoftext|>", bos_token="<|endoftext|>",
                               model_max_length=128)
fast.save_pretrained("tok")
print(len(fast), fast.tokenize("def f(x): return x"))
