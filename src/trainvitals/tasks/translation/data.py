"""Parallel text for the translation task: the built-in English→French corpus or a TSV file.

The built-in corpus is generated, not downloaded: English phrases about numbers, dates
and counted things, and their French translations written out with `num2words`. It
is real language in miniature — adjectives move behind the noun ("three red cars" →
"trois voitures rouges"), articles, numbers, adjectives and past the verb agree in
gender and number ("twenty-one houses" → "vingt et une maisons", "the houses are
white" → "les maisons sont blanches"), articles elide ("the tree" → "l'arbre"), and
dates reorder ("March third, ..." → "le trois mars ..."). A copy model scores badly.

Tokens are bytes of UTF-8 shifted by 3, in one vocabulary shared by both sides:
PAD=0, BOS=1, EOS=2, byte b → b+3 (VOCAB_SIZE=259). A batch is (src, tgt_in, tgt_out),
each (B, T) int64 right-padded with PAD: src = bytes+EOS, tgt_in = BOS+bytes,
tgt_out = bytes+EOS.
"""
from __future__ import annotations

import calendar
import functools
import itertools
import math
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, NamedTuple

import torch

from trainvitals.errors import ConfigError, check_range, check_type

__all__ = [
    "PAD_ID", "BOS_ID", "EOS_ID", "BYTE_OFFSET", "VOCAB_SIZE",
    "encode", "decode", "generate_pairs", "load_pairs_tsv",
    "Batch", "TranslationDataConfig", "TranslationData", "load_translation_data",
]

PAD_ID, BOS_ID, EOS_ID = 0, 1, 2
BYTE_OFFSET = 3
VOCAB_SIZE = 256 + BYTE_OFFSET


def encode(text: str) -> list[int]:
    """Text -> token ids (UTF-8 bytes + BYTE_OFFSET), no BOS/EOS."""
    return [b + BYTE_OFFSET for b in text.encode("utf-8")]


def decode(ids: list[int] | torch.Tensor) -> str:
    """Token ids -> text, stopping at the first EOS and skipping PAD/BOS."""
    if isinstance(ids, torch.Tensor):
        ids = ids.tolist()
    out = bytearray()
    for i in ids:
        if i == EOS_ID:
            break
        if i >= BYTE_OFFSET:
            out.append(i - BYTE_OFFSET)
    return out.decode("utf-8", errors="replace")


# --- the built-in corpus --------------------------------------------------------------

# english singular, english plural, french singular, french plural, gender
_NOUNS = [
    ("cat", "cats", "chat", "chats", "m"), ("dog", "dogs", "chien", "chiens", "m"),
    ("house", "houses", "maison", "maisons", "f"), ("car", "cars", "voiture", "voitures", "f"),
    ("book", "books", "livre", "livres", "m"), ("table", "tables", "table", "tables", "f"),
    ("tree", "trees", "arbre", "arbres", "m"), ("bird", "birds", "oiseau", "oiseaux", "m"),
    ("star", "stars", "étoile", "étoiles", "f"), ("horse", "horses", "cheval", "chevaux", "m"),
    ("apple", "apples", "pomme", "pommes", "f"), ("flower", "flowers", "fleur", "fleurs", "f"),
    ("chair", "chairs", "chaise", "chaises", "f"), ("boat", "boats", "bateau", "bateaux", "m"),
    ("city", "cities", "ville", "villes", "f"), ("child", "children", "enfant", "enfants", "m"),
    ("mouse", "mice", "souris", "souris", "f"), ("man", "men", "homme", "hommes", "m"),
    ("woman", "women", "femme", "femmes", "f"), ("key", "keys", "clé", "clés", "f"),
    ("bottle", "bottles", "bouteille", "bouteilles", "f"), ("glass", "glasses", "verre", "verres", "m"),
    ("letter", "letters", "lettre", "lettres", "f"), ("window", "windows", "fenêtre", "fenêtres", "f"),
]
# english, masc sg, masc pl, fem sg, fem pl, masc sg before a vowel (pre-noun adjectives)
_PRE_ADJ = [
    ("small", "petit", "petits", "petite", "petites", "petit"),
    ("big", "grand", "grands", "grande", "grandes", "grand"),
    ("new", "nouveau", "nouveaux", "nouvelle", "nouvelles", "nouvel"),
    ("old", "vieux", "vieux", "vieille", "vieilles", "vieil"),
    ("beautiful", "beau", "beaux", "belle", "belles", "bel"),
]
_COLOR_ADJ = [  # colours follow the noun in French
    ("red", "rouge", "rouges", "rouge", "rouges"), ("black", "noir", "noirs", "noire", "noires"),
    ("white", "blanc", "blancs", "blanche", "blanches"), ("green", "vert", "verts", "verte", "vertes"),
    ("blue", "bleu", "bleus", "bleue", "bleues"), ("grey", "gris", "gris", "grise", "grises"),
]
_MONTHS = [
    ("January", "janvier"), ("February", "février"), ("March", "mars"), ("April", "avril"),
    ("May", "mai"), ("June", "juin"), ("July", "juillet"), ("August", "août"),
    ("September", "septembre"), ("October", "octobre"), ("November", "novembre"),
    ("December", "décembre"),
]
_PEOPLE = {"child", "man", "woman"}  # no colour adjectives for these
_VOWELS = tuple("aeiouhéèê")
_FRAMES = [  # (english singular, english plural, french)
    ("", "", ""), ("I see ", "I see ", "je vois "), ("we have ", "we have ", "nous avons "),
    ("there is ", "there are ", "il y a "), ("you want ", "you want ", "tu veux "),
]


@functools.lru_cache(maxsize=None)
def _n2w(n: int, lang: str, to: str) -> str:
    from num2words import num2words
    text = num2words(n, lang=lang, to=to)
    if lang == "fr" and to == "ordinal":
        # num2words 0.5.x writes "quatre-vingtsième", "deux centsième"; the plural s goes
        text = re.sub(r"(vingt|cent)sième", r"\1ième", text)
    return text


def _fr_cardinal(n: int, gender: str) -> str:
    text = _n2w(n, "fr", "cardinal")
    # "vingt et un chats" but "vingt et une maisons", "quatre-vingt-une", "cent une"
    return re.sub(r"\bun$", "une", text) if gender == "f" else text


def _fr_ordinal(n: int, gender: str) -> str:
    if n == 1:
        return "première" if gender == "f" else "premier"
    return _n2w(n, "fr", "ordinal")


def _sample_number(rng: random.Random) -> int:
    r = rng.random()
    if r < 0.3:
        return rng.randint(1, 9)
    if r < 0.7:
        return rng.randint(10, 99)
    return rng.randint(100, 999)


def _fr_adj(adj: tuple, gender: str, plural: bool) -> str:
    return adj[1 + 2 * (gender == "f") + plural]


def _noun_phrase(rng: random.Random, det: str, number: int, plural: bool,
                 ordinal: int = 0) -> tuple[str, str]:
    """English and French for [det] [number|ordinal] [pre-adj] [colour] noun.

    det is "" (a bare count), "a", "one", "the", "my" or "your"; number 0 = no number word.
    """
    en_sg, en_pl, fr_sg, fr_pl, g = rng.choice(_NOUNS)
    pre = rng.choice(_PRE_ADJ) if rng.random() < 0.4 else None
    col = rng.choice(_COLOR_ADJ) if rng.random() < 0.5 and en_sg not in _PEOPLE else None
    fr_noun = fr_pl if plural else fr_sg
    en = [a[0] for a in (pre, col) if a] + [en_pl if plural else en_sg]
    fr = [fr_noun] + ([_fr_adj(col, g, plural)] if col else [])
    if pre:
        vowel_form = not plural and g == "m" and fr_noun.startswith(_VOWELS)
        fr.insert(0, pre[5] if vowel_form else _fr_adj(pre, g, plural))  # "un vieil arbre"
    if ordinal:
        en.insert(0, _n2w(ordinal, "en", "ordinal"))
        fr.insert(0, _fr_ordinal(ordinal, g))
    elif number:
        en.insert(0, _n2w(number, "en", "cardinal"))
        fr.insert(0, _fr_cardinal(number, g))
    vowel_next = not ordinal and fr[0].startswith(_VOWELS)
    if det in ("a", "one"):
        en.insert(0, "one" if det == "one" else ("an" if en[0][0] in "aeiou" else "a"))
        fr.insert(0, "une" if g == "f" else "un")
    elif det == "the":
        en.insert(0, "the")
        if plural:
            fr.insert(0, "les")
        elif vowel_next:
            fr[0] = "l'" + fr[0]  # "l'arbre", "l'étoile"
        else:
            fr.insert(0, "la" if g == "f" else "le")
    elif det in ("my", "your"):
        en.insert(0, det)
        m, f, p = ("mon", "ma", "mes") if det == "my" else ("ton", "ta", "tes")
        fr.insert(0, p if plural else (m if g == "m" or vowel_next else f))  # "mon étoile"
    return " ".join(en), " ".join(fr)


def _quantity(rng: random.Random) -> tuple[str, str]:
    """A counted or determined noun phrase, sometimes inside a short sentence."""
    det = rng.choice(["", "", "a", "one", "the", "the", "my", "your"])
    if det in ("a", "one"):
        number, plural = 0, False
    elif det == "":
        number = rng.choice([2, 3, 4, 5]) if rng.random() < 0.1 else _sample_number(rng)
        if number == 1:
            det, number = "one", 0
        plural = number > 1
    elif rng.random() < 0.4:
        number, plural = 0, rng.random() < 0.5  # "the cats", "my house"
    else:
        number = max(2, _sample_number(rng))
        plural = True
    en, fr = _noun_phrase(rng, det, number, plural)
    en_sg, en_pl, fr_frame = rng.choice(_FRAMES)
    return (en_pl if plural else en_sg) + en, fr_frame + fr


def _ordinal_phrase(rng: random.Random) -> tuple[str, str]:
    n = rng.randint(1, 20) if rng.random() < 0.6 else rng.randint(21, 999)
    return _noun_phrase(rng, "the", 0, False, ordinal=n)


def _predicate(rng: random.Random) -> tuple[str, str]:
    """'the houses are white' -> 'les maisons sont blanches'."""
    det = rng.choice(["the", "my", "your"])
    plural = rng.random() < 0.5
    en_sg, en_pl, fr_sg, fr_pl, g = rng.choice(_NOUNS)
    adj = rng.choice(_PRE_ADJ if en_sg in _PEOPLE else _PRE_ADJ + _COLOR_ADJ)
    subj_en = det + " " + (en_pl if plural else en_sg)
    fr_noun = fr_pl if plural else fr_sg
    if det == "the":
        art = "les " if plural else ("l'" if fr_noun.startswith(_VOWELS) else ("la " if g == "f" else "le "))
    else:
        m, f, p = ("mon ", "ma ", "mes ") if det == "my" else ("ton ", "ta ", "tes ")
        art = p if plural else (m if g == "m" or fr_noun.startswith(_VOWELS) else f)
    subj_fr = art + fr_noun
    verb_en, verb_fr = ("are", "sont") if plural else ("is", "est")
    return f"{subj_en} {verb_en} {adj[0]}", f"{subj_fr} {verb_fr} {_fr_adj(adj, g, plural)}"


def _date(rng: random.Random) -> tuple[str, str]:
    m = rng.randrange(12)
    year = rng.randint(1900, 2099)
    day = rng.randint(1, calendar.monthrange(year, m + 1)[1])
    en_month, fr_month = _MONTHS[m]
    en_day, en_year = _n2w(day, "en", "ordinal"), _n2w(year, "en", "year")
    fr = f"le {_fr_ordinal(1, 'm') if day == 1 else _n2w(day, 'fr', 'cardinal')} {fr_month}"
    fr += f" {_n2w(year, 'fr', 'year')}"
    if rng.random() < 0.5:
        return f"the {en_day} of {en_month} {en_year}", fr
    return f"{en_month} {en_day}, {en_year}", fr


def _bare_number(rng: random.Random) -> tuple[str, str]:
    r = rng.random()
    if r < 0.4:
        n = _sample_number(rng) if rng.random() < 0.7 else rng.randint(1000, 9999)
        return _n2w(n, "en", "cardinal"), _n2w(n, "fr", "cardinal")
    if r < 0.7:
        year = rng.randint(1900, 2099)
        return f"in {_n2w(year, 'en', 'year')}", f"en {_n2w(year, 'fr', 'year')}"
    n = _sample_number(rng)
    return f"the {_n2w(n, 'en', 'ordinal')}", f"le {_fr_ordinal(n, 'm')}"


_KINDS = [(_quantity, 0.42), (_ordinal_phrase, 0.13), (_predicate, 0.12), (_date, 0.23),
          (_bare_number, 0.10)]


def generate_pairs(n: int, seed: int = 0, max_len: int = 96) -> list[tuple[str, str]]:
    """`n` distinct (english, french) pairs, each side at most `max_len` UTF-8 bytes.

    Deterministic in (n, seed, max_len); different seeds give different corpora.
    """
    check_range("n", n, 1)
    rng = random.Random(seed)
    makers, weights = zip(*_KINDS)
    cum = list(itertools.accumulate(weights))
    seen: set[str] = set()
    pairs: list[tuple[str, str]] = []
    attempts = 0
    while len(pairs) < n:
        attempts += 1
        if attempts > 20 * n + 1000:
            raise ConfigError(f"n={n}: could not generate that many distinct pairs "
                              f"within max_len={max_len}; lower n or raise max_len")
        src, tgt = rng.choices(makers, cum_weights=cum)[0](rng)
        if src in seen or max(len(src.encode()), len(tgt.encode())) > max_len:
            continue
        seen.add(src)
        pairs.append((src, tgt))
    return pairs


# --- the user's own corpus --------------------------------------------------------------

def load_pairs_tsv(path: str | Path, max_len: int | None = None) -> list[tuple[str, str]]:
    """Read `source<TAB>target` lines (UTF-8). Blank lines are skipped.

    A malformed line raises ValueError naming the file, the line number and the fault.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"data={str(path)!r}: no such file; give a UTF-8 file of "
                          f"'source<TAB>target' lines")
    pairs: list[tuple[str, str]] = []
    with p.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            where = f"{p}:{lineno}"
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as e:
                raise ValueError(f"{where}: not valid UTF-8 ({e.reason} at byte {e.start})") from None
            if not line.strip():
                continue
            parts = line.split("\t")
            if len(parts) != 2:
                raise ValueError(f"{where}: expected 'source<TAB>target', found "
                                 f"{len(parts) - 1} tabs")
            src, tgt = parts[0].strip(), parts[1].strip()
            if not src or not tgt:
                raise ValueError(f"{where}: the {'source' if not src else 'target'} side is empty")
            if max_len is not None:
                for side, text in (("source", src), ("target", tgt)):
                    if len(text.encode("utf-8")) > max_len:
                        raise ValueError(f"{where}: the {side} side is {len(text.encode('utf-8'))} "
                                         f"bytes, more than max_len={max_len}")
            pairs.append((src, tgt))
    if not pairs:
        raise ValueError(f"{p}: no 'source<TAB>target' lines")
    return pairs


# --- batches ----------------------------------------------------------------------------

class Batch(NamedTuple):
    src: torch.Tensor  # (B, S) bytes + EOS, PAD-padded
    tgt_in: torch.Tensor  # (B, T) BOS + bytes
    tgt_out: torch.Tensor  # (B, T) bytes + EOS


def _pad(seqs: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    out = torch.tensor([s + [PAD_ID] * (width - len(s)) for s in seqs], dtype=torch.long)
    return out, torch.tensor([len(s) for s in seqs])


class _Split:
    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self.pairs = pairs
        self.src, self.src_len = _pad([encode(s) + [EOS_ID] for s, _ in pairs])
        self.tgt, self.tgt_len = _pad([[BOS_ID] + encode(t) + [EOS_ID] for _, t in pairs])

    def batch(self, idx: torch.Tensor) -> Batch:
        s, t = int(self.src_len[idx].max()), int(self.tgt_len[idx].max())
        tgt = self.tgt[idx, :t]
        return Batch(self.src[idx, :s], tgt[:, :-1], tgt[:, 1:])


@dataclass
class TranslationDataConfig:
    data: str = ""  # a 'source<TAB>target' file; "" = the built-in English→French corpus
    n_train: int = 20_000  # built-in corpus only
    n_val: int = 1_000  # built-in corpus only
    val_fraction: float = 0.1  # TSV only: share of the (deduplicated) pairs held out
    max_len: int = 96  # bytes per side, BOS/EOS not counted
    seed: int = 0  # corpus generation and the TSV split

    def __post_init__(self) -> None:
        check_type("data", self.data, str)
        for name in ("n_train", "n_val", "max_len", "seed"):
            check_type(name, getattr(self, name), int)
        check_range("n_train", self.n_train, 1)
        check_range("n_val", self.n_val, 1)
        check_range("max_len", self.max_len, 1)
        check_range("val_fraction", self.val_fraction, 0, 0.5, lo_open=True)
        if self.data and not Path(self.data).is_file():
            raise ConfigError(f"data={self.data!r}: no such file; give a UTF-8 file of "
                              f"'source<TAB>target' lines, or \"\" for the built-in corpus")


class TranslationData:
    """Train and validation pairs, pre-encoded; batches of (src, tgt_in, tgt_out)."""

    def __init__(self, train_pairs: list[tuple[str, str]], val_pairs: list[tuple[str, str]]) -> None:
        if not train_pairs or not val_pairs:
            raise ValueError(f"need at least one training and one validation pair, got "
                             f"{len(train_pairs)} and {len(val_pairs)}")
        self.train, self.val = _Split(train_pairs), _Split(val_pairs)
        self.vocab_size = VOCAB_SIZE

    @classmethod
    def builtin(cls, n_train: int = 20_000, n_val: int = 1_000, seed: int = 0,
                max_len: int = 96) -> "TranslationData":
        """The generated English→French corpus; validation pairs never occur in training."""
        pairs = generate_pairs(n_train + n_val, seed=seed, max_len=max_len)
        return cls(pairs[n_val:], pairs[:n_val])

    @classmethod
    def from_tsv(cls, path: str | Path, val_fraction: float = 0.1, seed: int = 0,
                 max_len: int | None = 96) -> "TranslationData":
        """Pairs from a TSV file; duplicates dropped so no pair is in both splits."""
        check_range("val_fraction", val_fraction, 0, 0.5, lo_open=True)
        pairs = list(dict.fromkeys(load_pairs_tsv(path, max_len=max_len)))
        if len(pairs) < 2:
            raise ValueError(f"{path}: {len(pairs)} distinct pairs; need at least 2 to split")
        random.Random(seed).shuffle(pairs)
        n_val = min(max(1, round(len(pairs) * val_fraction)), len(pairs) - 1)
        return cls(pairs[n_val:], pairs[:n_val])

    @property
    def train_pairs(self) -> list[tuple[str, str]]:
        return self.train.pairs

    @property
    def val_pairs(self) -> list[tuple[str, str]]:
        return self.val.pairs

    def num_train_batches(self, batch_size: int, drop_last: bool = True) -> int:
        n = len(self.train.pairs)
        return n // batch_size if drop_last else math.ceil(n / batch_size)

    def train_batches(self, batch_size: int, generator: torch.Generator | None = None,
                      drop_last: bool = True) -> Iterator[Batch]:
        """One shuffled pass over the training pairs; the order comes from `generator`."""
        check_range("batch_size", batch_size, 1)
        order = torch.randperm(len(self.train.pairs), generator=generator)
        stop = self.num_train_batches(batch_size, drop_last) * batch_size
        for i in range(0, stop, batch_size):
            yield self.train.batch(order[i:min(i + batch_size, stop)])

    def val_batches(self, batch_size: int) -> Iterator[Batch]:
        """The validation pairs in a fixed order, last batch possibly short."""
        check_range("batch_size", batch_size, 1)
        n = len(self.val.pairs)
        for i in range(0, n, batch_size):
            yield self.val.batch(torch.arange(i, min(i + batch_size, n)))

    def unigram_entropy(self) -> float:
        """Entropy in nats of the training target tokens (bytes + EOS, no PAD).

        The loss of a model that learned only token frequencies: a run stuck here has
        learned nothing about the source.
        """
        toks = self.train.tgt[:, 1:]
        counts = torch.bincount(toks[toks != PAD_ID], minlength=VOCAB_SIZE).double()
        p = counts[counts > 0] / counts.sum()
        return float(-(p * p.log()).sum())

    def describe(self) -> str:
        return (f"{len(self.train.pairs):,} train pairs, {len(self.val.pairs):,} val pairs, "
                f"target unigram entropy {self.unigram_entropy():.3f} nats")


def load_translation_data(cfg: TranslationDataConfig) -> TranslationData:
    if cfg.data:
        return TranslationData.from_tsv(cfg.data, cfg.val_fraction, cfg.seed, cfg.max_len)
    return TranslationData.builtin(cfg.n_train, cfg.n_val, cfg.seed, cfg.max_len)
