"""German inflection (articles, adjectives, nouns, verbs) and the few English forms needed.

Cases are ``nom``, ``acc``, ``dat``; persons are ``1sg 2sg 3sg 1pl 2pl 3pl``.
"""

from __future__ import annotations

from speechkd.data.synth.en_de_lexicon import MODALS, Noun, Verb

# Endings of "der" and "dieser": (gender or "pl", case) -> (der-form, dies-ending).
_DEF = {
    ("m", "nom"): ("der", "er"),
    ("f", "nom"): ("die", "e"),
    ("n", "nom"): ("das", "es"),
    ("pl", "nom"): ("die", "e"),
    ("m", "acc"): ("den", "en"),
    ("f", "acc"): ("die", "e"),
    ("n", "acc"): ("das", "es"),
    ("pl", "acc"): ("die", "e"),
    ("m", "dat"): ("dem", "em"),
    ("f", "dat"): ("der", "er"),
    ("n", "dat"): ("dem", "em"),
    ("pl", "dat"): ("den", "en"),
}
# Endings of ein/kein/mein ...
_EIN = {
    ("m", "nom"): "",
    ("f", "nom"): "e",
    ("n", "nom"): "",
    ("pl", "nom"): "e",
    ("m", "acc"): "en",
    ("f", "acc"): "e",
    ("n", "acc"): "",
    ("pl", "acc"): "e",
    ("m", "dat"): "em",
    ("f", "dat"): "er",
    ("n", "dat"): "em",
    ("pl", "dat"): "en",
}
# Adjective endings after der-words (weak), ein-words (mixed) and without determiner (strong).
_WEAK = {
    ("m", "nom"): "e",
    ("f", "nom"): "e",
    ("n", "nom"): "e",
    ("m", "acc"): "en",
    ("f", "acc"): "e",
    ("n", "acc"): "e",
}
_MIXED = {
    ("m", "nom"): "er",
    ("f", "nom"): "e",
    ("n", "nom"): "es",
    ("m", "acc"): "en",
    ("f", "acc"): "e",
    ("n", "acc"): "es",
}
_STRONG_PL = {"nom": "e", "acc": "e", "dat": "en"}

# Preposition + definite article contractions.
CONTRACTIONS = {
    ("in", "dem"): "im",
    ("in", "das"): "ins",
    ("an", "dem"): "am",
    ("an", "das"): "ans",
    ("zu", "dem"): "zum",
    ("zu", "der"): "zur",
    ("von", "dem"): "vom",
    ("bei", "dem"): "beim",
}


def _slot(gender: str, plural: bool) -> str:
    return "pl" if plural else gender


def de_determiner(stem: str, gender: str, plural: bool, case: str) -> str:
    """Declined German determiner for a stem from ``DETERMINERS`` ('' for a bare plural)."""
    slot = (_slot(gender, plural), case)
    if stem == "d":
        return _DEF[slot][0]
    if stem == "dies":
        return "dies" + _DEF[slot][1]
    if stem == "ein" and plural:
        return ""
    return stem + _EIN[slot]


def adjective_declension(stem: str, plural: bool) -> str:
    """Declension class of an attributive adjective after a determiner stem."""
    if stem in ("d", "dies"):
        return "weak"
    if stem == "ein" and plural:
        return "strong"
    return "mixed"


def de_adjective(adj_stem: str, declension: str, gender: str, plural: bool, case: str) -> str:
    """Attributive adjective with its weak, mixed or strong ending (müde + en -> müden)."""
    if declension == "strong":
        if not plural:
            raise ValueError("strong singular adjectives are not generated")
        ending = _STRONG_PL[case]
    elif plural or case == "dat":
        ending = "en"
    else:
        ending = (_WEAK if declension == "weak" else _MIXED)[(gender, case)]
    return adj_stem + (ending[1:] if adj_stem.endswith("e") else ending)


def de_noun(noun: Noun, plural: bool, case: str) -> str:
    """Noun form: n-declension outside the nominative singular, dative plural -n."""
    if not plural:
        return noun.de if case == "nom" else noun.de + noun.weak
    form = noun.de_pl
    if case == "dat" and not form.endswith(("n", "s")):
        form += "n"
    return form


def _needs_e(stem: str) -> bool:
    """Stems like arbeit-, find-, öffn- insert -e- before -st/-t."""
    if stem.endswith(("t", "d")):
        return True
    return stem.endswith(("m", "n")) and len(stem) > 1 and stem[-2] not in "aeiouäöülrmnh"


_SEIN = {"1sg": "bin", "2sg": "bist", "3sg": "ist", "1pl": "sind", "2pl": "seid", "3pl": "sind"}
_SEIN_PAST = {
    "1sg": "war",
    "2sg": "warst",
    "3sg": "war",
    "1pl": "waren",
    "2pl": "wart",
    "3pl": "waren",
}
_HABEN = {
    "1sg": "habe",
    "2sg": "hast",
    "3sg": "hat",
    "1pl": "haben",
    "2pl": "habt",
    "3pl": "haben",
}
_WISSEN = {
    "1sg": "weiß",
    "2sg": "weißt",
    "3sg": "weiß",
    "1pl": "wissen",
    "2pl": "wisst",
    "3pl": "wissen",
}


def de_present(infinitive: str, person: str, strong_stem: str = "") -> str:
    """Present-tense form of a (prefix-less) German verb."""
    if infinitive == "sein":
        return _SEIN[person]
    if infinitive == "haben":
        return _HABEN[person]
    if infinitive == "wissen":
        return _WISSEN[person]
    if person in ("1pl", "3pl"):
        return infinitive
    stem = infinitive[:-2] if infinitive.endswith("en") else infinitive[:-1]
    if person == "1sg":
        return stem + "e"
    changed = person in ("2sg", "3sg") and bool(strong_stem)
    base = strong_stem if changed else stem
    e = "" if changed else ("e" if _needs_e(stem) else "")
    if person == "2sg":
        return base + ("t" if not e and base.endswith(("s", "ß", "z", "x")) else e + "st")
    return base + e + "t"


def de_finite(verb: Verb, person: str, tense: str, modal: str | None, joined: bool) -> str:
    """Finite verb of a clause: auxiliary, modal or the verb itself.

    ``joined`` glues a separable prefix to the verb (verb-final clauses).
    """
    if modal:
        return MODALS[modal][person]
    if tense == "past":
        if verb.valency == "copula":
            return _SEIN_PAST[person]
        return de_present(verb.aux, person)
    form = de_present(verb.de, person, verb.de_strong)
    return verb.de_prefix + form if joined else form


def de_nonfinite(verb: Verb, tense: str, modal: str | None) -> str:
    """Clause-final participle, infinitive (with prefix) or '' for simple tenses."""
    if modal:
        return verb.de_prefix + verb.de
    if tense == "past" and verb.valency != "copula":
        return verb.de_part
    return ""


def en_article(word: str) -> str:
    """'a' or 'an' before ``word``."""
    return "an" if word[:1].lower() in "aeiou" else "a"


def en_be(person: str, tense: str) -> str:
    if tense == "past":
        return "was" if person in ("1sg", "3sg") else "were"
    return {"1sg": "am", "3sg": "is"}.get(person, "are")


def en_do(person: str, tense: str) -> str:
    if tense == "past":
        return "did"
    return "does" if person == "3sg" else "do"
