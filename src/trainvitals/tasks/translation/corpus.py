"""The built-in English→French corpus, generated with `num2words`: nothing downloads.

English phrases about numbers, dates and counted things, and their French
translations. It is real language in miniature: colour adjectives move behind the
noun ("three red cars" → "trois voitures rouges"); articles, numbers and adjectives
agree with the noun in gender and number ("twenty-one houses" → "vingt et une
maisons"); articles elide ("the tree" → "l'arbre"); dates reorder ("March third, ..."
→ "le trois mars ..."). A copy model scores badly.
"""
from __future__ import annotations

import calendar
import functools
import itertools
import random
import re

from trainvitals.errors import ConfigError, check_range

__all__ = ["generate_pairs", "noun_phrase", "date_phrase"]

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
_NOUN = {n[0]: n for n in _NOUNS}
_PRE = {a[0]: a for a in _PRE_ADJ}
_COLOUR = {a[0]: a for a in _COLOR_ADJ}
_VOWELS = tuple("aeiouhéèê")
_FRAMES = [  # (english singular, english plural, french)
    ("", "", ""), ("I see ", "I see ", "je vois "), ("we have ", "we have ", "nous avons "),
    ("there is ", "there are ", "il y a "), ("you want ", "you want ", "tu veux "),
]


@functools.cache
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


def _fr_determiner(det: str, gender: str, plural: bool, next_word: str, elide: bool = True) -> list[str]:
    """French words for an English determiner, given the French word that follows."""
    vowel = elide and next_word.startswith(_VOWELS)
    if det in ("a", "one"):
        return ["une" if gender == "f" else "un"]
    if det == "the":
        if plural:
            return ["les"]
        return ["l'"] if vowel else ["la" if gender == "f" else "le"]
    if det in ("my", "your"):
        m, f, p = ("mon", "ma", "mes") if det == "my" else ("ton", "ta", "tes")
        return [p if plural else (m if gender == "m" or vowel else f)]  # "mon étoile"
    return []


def _join(words: list[str]) -> str:
    return " ".join(words).replace("l' ", "l'")


def noun_phrase(noun: str, det: str = "", number: int = 0, *, plural: bool | None = None,
                pre: str | None = None, colour: str | None = None,
                ordinal: int = 0) -> tuple[str, str]:
    """(english, french) for [det] [number | ordinal] [pre] [colour] noun: the corpus's rule.

    noun, pre and colour are English words from the built-in lists; det is "" (a bare
    count), "a", "one", "the", "my" or "your"; number 0 = no number word; plural
    defaults to number > 1. noun_phrase("house", number=21) ==
    ("twenty-one houses", "vingt et une maisons").
    """
    en_sg, en_pl, fr_sg, fr_pl, g = _NOUN[noun]
    plural = number > 1 if plural is None else plural
    fr_noun = fr_pl if plural else fr_sg
    en = [w for w in (pre, colour) if w] + [en_pl if plural else en_sg]
    fr = [fr_noun] + ([_fr_adj(_COLOUR[colour], g, plural)] if colour else [])
    if pre:
        adj = _PRE[pre]
        vowel_form = not plural and g == "m" and fr_noun.startswith(_VOWELS)
        fr.insert(0, adj[5] if vowel_form else _fr_adj(adj, g, plural))  # "un vieil arbre"
    if ordinal:
        en.insert(0, _n2w(ordinal, "en", "ordinal"))
        fr.insert(0, _fr_ordinal(ordinal, g))
    elif number:
        en.insert(0, _n2w(number, "en", "cardinal"))
        fr.insert(0, _fr_cardinal(number, g))
    if det:
        en.insert(0, "an" if det == "a" and en[0][0] in "aeiou" else det)
    # "le onzième", "le huitième": ordinals never take an elided article
    fr = _fr_determiner(det, g, plural, fr[0], elide=not ordinal) + fr
    return " ".join(en), _join(fr)


def date_phrase(day: int, month: int, year: int, us_style: bool = False) -> tuple[str, str]:
    """(english, french) for a date; month is 1-12.

    date_phrase(3, 3, 1998) == ("the third of March nineteen ninety-eight",
    "le trois mars mille neuf cent quatre-vingt-dix-huit"); us_style gives "March third, ...".
    """
    en_month, fr_month = _MONTHS[month - 1]
    en_day, en_year = _n2w(day, "en", "ordinal"), _n2w(year, "en", "year")
    fr_day = _fr_ordinal(1, "m") if day == 1 else _n2w(day, "fr", "cardinal")  # "le premier mai"
    fr = f"le {fr_day} {fr_month} {_n2w(year, 'fr', 'year')}"
    if us_style:
        return f"{en_month} {en_day}, {en_year}", fr
    return f"the {en_day} of {en_month} {en_year}", fr


def _random_phrase(rng: random.Random, det: str, number: int, plural: bool,
                   ordinal: int = 0) -> tuple[str, str]:
    noun = rng.choice(_NOUNS)[0]
    pre = rng.choice(_PRE_ADJ)[0] if rng.random() < 0.4 else None
    colour = rng.choice(_COLOR_ADJ)[0] if rng.random() < 0.5 and noun not in _PEOPLE else None
    return noun_phrase(noun, det, number, plural=plural, pre=pre, colour=colour, ordinal=ordinal)


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
    en, fr = _random_phrase(rng, det, number, plural)
    frames = _FRAMES if det not in ("my", "your") else [f for f in _FRAMES if f[0] != "we have "]
    en_sg, en_pl, fr_frame = rng.choice(frames)
    return (en_pl if plural else en_sg) + en, fr_frame + fr


def _ordinal_phrase(rng: random.Random) -> tuple[str, str]:
    n = rng.randint(1, 20) if rng.random() < 0.6 else rng.randint(21, 999)
    return _random_phrase(rng, "the", 0, False, ordinal=n)


def _predicate(rng: random.Random) -> tuple[str, str]:
    """'the houses are white' -> 'les maisons sont blanches'."""
    det = rng.choice(["the", "my", "your"])
    plural = rng.random() < 0.5
    en_sg, en_pl, fr_sg, fr_pl, g = rng.choice(_NOUNS)
    adj = rng.choice(_PRE_ADJ if en_sg in _PEOPLE else _PRE_ADJ + _COLOR_ADJ)
    fr_noun = fr_pl if plural else fr_sg
    subj_fr = _join(_fr_determiner(det, g, plural, fr_noun) + [fr_noun])
    verb_en, verb_fr = ("are", "sont") if plural else ("is", "est")
    return (f"{det} {en_pl if plural else en_sg} {verb_en} {adj[0]}",
            f"{subj_fr} {verb_fr} {_fr_adj(adj, g, plural)}")


def _date(rng: random.Random) -> tuple[str, str]:
    month = rng.randint(1, 12)
    year = rng.randint(1900, 2099)
    day = rng.randint(1, calendar.monthrange(year, month)[1])
    return date_phrase(day, month, year, us_style=rng.random() < 0.5)


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
