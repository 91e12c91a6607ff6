"""A small synchronous English -> German grammar for the synthetic speech-translation set.

A :class:`Sentence` (one or two :class:`Clause` s built from :class:`NounPhrase` s) is rendered
into both languages at once by :func:`render`. German gets real morphology (gender, case,
strong/weak/mixed adjective endings, n-declension, person/number agreement, haben/sein
perfect) and syntax (V2 with inversion after a fronted adverbial or clause, verb-final
subordinate clauses, separable prefixes, nicht/kein negation, V1 questions). English past
tense is rendered as German Perfekt, as a German speaker would say it.
:func:`generate_translation_pairs` samples unique pairs deterministically from a seed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import cache
from typing import NamedTuple

from speechkd.data.synth.en_de_lexicon import (
    ADJECTIVES,
    ADJUNCT_PREPOSITIONS,
    ADVERBS,
    CONJUNCTIONS,
    DETERMINERS,
    MODALS,
    NOUNS,
    PERSON_DIR,
    PRONOUNS,
    VERBS,
    Adjective,
    Adverb,
    Noun,
    Verb,
)
from speechkd.data.synth.en_de_morphology import (
    CONTRACTIONS,
    adjective_declension,
    de_adjective,
    de_determiner,
    de_finite,
    de_nonfinite,
    de_noun,
    de_present,
    en_article,
    en_be,
    en_do,
)
from speechkd.errors import ConfigError

NOUN_BY_KEY: dict[str, Noun] = {n.en: n for n in NOUNS}
VERB_BY_KEY: dict[str, Verb] = {v.key: v for v in VERBS}
ADJECTIVE_BY_KEY: dict[str, Adjective] = {a.en: a for a in ADJECTIVES}
ADVERB_BY_KEY: dict[str, Adverb] = {a.en: a for a in ADVERBS}


class TranslationPair(NamedTuple):
    en: str
    de: str


@dataclass(frozen=True)
class NounPhrase:
    """``det`` is a key of ``DETERMINERS``; ``noun``/``adj`` are English keys."""

    noun: str
    det: str = "the"
    plural: bool = False
    adj: str | None = None


@dataclass(frozen=True)
class Pronoun:
    """Subject pronoun; ``person`` is a key of ``PRONOUNS`` (e.g. ``"3sg_f"``)."""

    person: str


@dataclass(frozen=True)
class Adjunct:
    """Prepositional adjunct: ``kind`` is loc | dir | with | for | without."""

    kind: str
    np: NounPhrase


@dataclass(frozen=True)
class Clause:
    """One clause. ``verb`` is a German infinitive key (``"anrufen"``); ``obj`` is the
    accusative (or, for dative verbs, the dative) object, ``iobj`` the dative recipient of a
    ditransitive verb, ``pred`` a predicative adjective of the copula. ``tense`` is
    present | past; ``modal`` can | want | must (present only); ``adverb_pos`` front | mid | end.
    """

    subject: NounPhrase | Pronoun
    verb: str
    obj: NounPhrase | None = None
    iobj: NounPhrase | None = None
    pred: str | None = None
    adjunct: Adjunct | None = None
    tense: str = "present"
    modal: str | None = None
    negated: bool = False
    adverb: str | None = None
    adverb_pos: str = "end"
    en_double_object: bool = False


@dataclass(frozen=True)
class Sentence:
    """A statement or yes/no question, optionally with a subordinate clause.

    ``conj`` is because | when | that; ``sub_first`` fronts a because/when clause.
    """

    main: Clause
    question: bool = False
    conj: str | None = None
    sub: Clause | None = None
    sub_first: bool = False


# ----------------------------------------------------------------------------- rendering


def _person(subject: NounPhrase | Pronoun) -> str:
    if isinstance(subject, Pronoun):
        return subject.person[:3]
    return "3pl" if subject.plural else "3sg"


def _kein_target(clause: Clause) -> bool:
    """Negating an indefinite object uses "kein" instead of "nicht"."""
    return clause.negated and clause.obj is not None and clause.obj.det == "a"


def de_noun_phrase(np: NounPhrase, case: str, negate: bool = False) -> list[str]:
    """German noun phrase in ``case``; ``negate`` turns an indefinite determiner into kein."""
    noun = NOUN_BY_KEY[np.noun]
    stem = DETERMINERS[np.det]
    if negate and np.det == "a":
        stem = "kein"
    words = []
    det = de_determiner(stem, noun.gender, np.plural, case)
    if det:
        words.append(det)
    if np.adj:
        decl = adjective_declension(stem, np.plural)
        adj = ADJECTIVE_BY_KEY[np.adj].stem
        words.append(de_adjective(adj, decl, noun.gender, np.plural, case))
    words.append(de_noun(noun, np.plural, case))
    return words


def en_noun_phrase(np: NounPhrase, negate: bool = False) -> list[str]:
    """English noun phrase; a negated indefinite plural takes "any"."""
    noun = NOUN_BY_KEY[np.noun]
    words = [np.adj] if np.adj else []
    words.append(noun.en_pl if np.plural else noun.en)
    if np.det == "a":
        if np.plural:
            return (["any"] if negate else []) + words
        return [en_article(words[0])] + words
    if np.det == "this":
        return ["these" if np.plural else "this"] + words
    return [np.det] + words


def _adjunct_preps(adjunct: Adjunct) -> tuple[str, str, str]:
    noun = NOUN_BY_KEY[adjunct.np.noun]
    if adjunct.kind == "loc":
        if noun.loc is None:
            raise ValueError(f"noun {noun.en!r} has no locative preposition")
        return noun.loc[0], noun.loc[1], "dat"
    if adjunct.kind == "dir":
        if noun.dir is not None:
            return noun.dir
        if "P" in noun.tags:
            return PERSON_DIR
        raise ValueError(f"noun {noun.en!r} cannot be a destination")
    return ADJUNCT_PREPOSITIONS[adjunct.kind]


def de_adjunct(adjunct: Adjunct) -> list[str]:
    """German prepositional phrase with the governed case and article contraction."""
    _, prep, case = _adjunct_preps(adjunct)
    np = de_noun_phrase(adjunct.np, case)
    contracted = CONTRACTIONS.get((prep, np[0])) if adjunct.np.det == "the" else None
    return [contracted] + np[1:] if contracted else [prep] + np


def en_adjunct(adjunct: Adjunct) -> list[str]:
    return [_adjunct_preps(adjunct)[0]] + en_noun_phrase(adjunct.np)


def _de_subject(subject: NounPhrase | Pronoun) -> list[str]:
    if isinstance(subject, Pronoun):
        return [PRONOUNS[subject.person][1]]
    return de_noun_phrase(subject, "nom")


def _en_subject(subject: NounPhrase | Pronoun) -> list[str]:
    if isinstance(subject, Pronoun):
        return PRONOUNS[subject.person][0].split()
    return en_noun_phrase(subject)


@dataclass
class _GermanClause:
    front: list[str]  # fronted adverbial ([] if none)
    subject: list[str]
    finite_v2: str  # finite verb in second/first position
    finite_final: str  # finite verb at the end of a subordinate clause (prefix joined)
    middle: list[str]
    right: list[str]  # nonfinite verb or separable prefix in main clauses
    nonfinite: str

    def main(self, fronted: list[str] | None = None) -> list[str]:
        front = fronted if fronted is not None else self.front
        body = self.middle + self.right
        if front:
            return front + [self.finite_v2] + self.subject + body
        return self.subject + [self.finite_v2] + body

    def question(self) -> list[str]:
        return [self.finite_v2] + self.subject + self.middle + self.right

    def subordinate(self) -> list[str]:
        tail = [w for w in (self.nonfinite, self.finite_final) if w]
        return self.subject + self.front + self.middle + tail


def _german_clause(c: Clause) -> _GermanClause:
    verb = VERB_BY_KEY[c.verb]
    person = _person(c.subject)
    kein = _kein_target(c)
    middle: list[str] = []
    front: list[str] = []
    if c.adverb:
        adverb = ADVERB_BY_KEY[c.adverb].de.split()
        if c.adverb_pos == "front":
            front = adverb
        else:
            middle += adverb
    if c.iobj:
        middle += de_noun_phrase(c.iobj, "dat")
    if c.obj:
        middle += de_noun_phrase(c.obj, "dat" if verb.valency == "dat" else "acc", negate=kein)
    after_negation: list[str] = []
    if c.adjunct:
        pp = de_adjunct(c.adjunct)
        if c.adjunct.kind == "loc" and verb.valency != "copula":
            middle += pp
        else:
            after_negation += pp
    if c.negated and not kein:
        middle.append("nicht")
    middle += after_negation
    if c.pred:
        middle.append(ADJECTIVE_BY_KEY[c.pred].de)
    nonfinite = de_nonfinite(verb, c.tense, c.modal)
    right = [nonfinite] if nonfinite else ([verb.de_prefix] if verb.de_prefix else [])
    return _GermanClause(
        front=front,
        subject=_de_subject(c.subject),
        finite_v2=de_finite(verb, person, c.tense, c.modal, joined=False),
        finite_final=de_finite(verb, person, c.tense, c.modal, joined=True),
        middle=middle,
        right=right,
        nonfinite=nonfinite,
    )


def _en_verb_group(c: Clause, verb: Verb, question: bool) -> tuple[list[str], list[str]]:
    """(words before the subject, words after it) of the English verb group."""
    person = _person(c.subject)
    mid = ADVERB_BY_KEY[c.adverb].en.split() if c.adverb and c.adverb_pos == "mid" else []
    neg = ["not"] if c.negated else []
    base = verb.en
    if c.modal:
        do = en_do(person, "present")
        if c.modal == "can":
            if question:
                return ["can"], neg + mid + [base]
            return [], (["cannot"] if c.negated else ["can"]) + mid + [base]
        phrase = ["want", "to"] if c.modal == "want" else ["have", "to"]
        if question:
            return [do], neg + mid + phrase + [base]
        if c.negated:
            return [], [do, "not"] + phrase + [base]
        if c.modal == "want":
            return [], mid + ["wants" if person == "3sg" else "want", "to", base]
        return [], ["must"] + mid + [base]
    if verb.valency == "copula":
        be = en_be(person, c.tense)
        return ([be], neg + mid) if question else ([], [be] + neg + mid)
    if question or c.negated:
        aux = [en_do(person, c.tense)]
        return (aux, neg + mid + [base]) if question else ([], aux + neg + mid + [base])
    if c.tense == "past":
        form = verb.en_past
    else:
        form = verb.en_3sg if person == "3sg" else verb.en
    return [], mid + [form]


def _english_clause(c: Clause, question: bool = False) -> list[str]:
    verb = VERB_BY_KEY[c.verb]
    before, group = _en_verb_group(c, verb, question)
    words = before + _en_subject(c.subject) + group
    kein = _kein_target(c)
    if verb.valency == "ditr":
        if c.obj is None or c.iobj is None:
            raise ValueError(f"ditransitive {verb.key!r} needs obj and iobj")
        theme = en_noun_phrase(c.obj, negate=kein)
        recipient = en_noun_phrase(c.iobj)
        words += recipient + theme if c.en_double_object else theme + ["to"] + recipient
    elif c.obj is not None:
        prep = [verb.en_prep] if verb.en_prep else []
        words += prep + en_noun_phrase(c.obj, negate=kein)
    if verb.en_particle:
        words.append(verb.en_particle)
    if c.pred:
        words.append(c.pred)
    if c.adjunct:
        words += en_adjunct(c.adjunct)
    if c.adverb and c.adverb_pos == "end":
        words += ADVERB_BY_KEY[c.adverb].en.split()
    if c.adverb and c.adverb_pos == "front":
        words = ADVERB_BY_KEY[c.adverb].en.split() + words
    return words


def _finish(words: list[str], mark: str) -> str:
    text = " ".join(words).replace(" ,", ",")
    return text[0].upper() + text[1:] + mark


def render(sentence: Sentence) -> TranslationPair:
    """Render one sentence structure into its (English, German) pair."""
    main = sentence.main
    mark = "?" if sentence.question else "."
    de_main = _german_clause(main)
    if sentence.question:
        if sentence.sub is not None or main.adverb_pos == "front" and main.adverb:
            raise ValueError("questions take neither a subordinate clause nor a fronted adverb")
        return TranslationPair(
            _finish(_english_clause(main, question=True), mark), _finish(de_main.question(), mark)
        )
    if sentence.sub is None:
        return TranslationPair(_finish(_english_clause(main), mark), _finish(de_main.main(), mark))
    if sentence.conj not in CONJUNCTIONS:
        raise ValueError(f"unknown conjunction {sentence.conj!r}")
    if sentence.sub.adverb_pos == "front" and sentence.sub.adverb:
        raise ValueError("a subordinate clause cannot front its adverb")
    de_conj = CONJUNCTIONS[sentence.conj]
    en_sub = [sentence.conj] + _english_clause(sentence.sub)
    de_sub = [de_conj] + _german_clause(sentence.sub).subordinate()
    if sentence.sub_first:
        if sentence.conj == "that" or main.adverb_pos == "front" and main.adverb:
            raise ValueError("only a because/when clause can be fronted, without a fronted adverb")
        en = en_sub + [","] + _english_clause(main)
        de = de_main.main(fronted=de_sub + [","])
    else:
        en = _english_clause(main) + en_sub
        de = de_main.main() + [","] + de_sub
    return TranslationPair(_finish(en, mark), _finish(de, mark))


# ----------------------------------------------------------------------------- sampling

_DETS = ("the", "the", "the", "the", "a", "a", "a", "this", "my", "your", "his", "her", "our")
_DETS += ("their",)
_MODAL_KEYS = tuple(MODALS)
_PERSON_PRONOUNS = tuple(p for p in PRONOUNS if p != "3sg_n")


@cache
def _nouns_with(tags: frozenset[str]) -> tuple[Noun, ...]:
    return tuple(n for n in NOUNS if n.tags & tags)


@cache
def _adjectives_for(tags: frozenset[str]) -> tuple[Adjective, ...]:
    return tuple(a for a in ADJECTIVES if a.tags & tags)


_P = frozenset("P")
_PA = frozenset("PA")
_PAT = frozenset("PAT")
_PLACE = frozenset("L")
_VERBS_BY_VALENCY: dict[str, tuple[Verb, ...]] = {
    val: tuple(v for v in VERBS if v.valency == val)
    for val in ("intr", "acc", "dat", "ditr", "clause", "copula")
}


class _Sampler:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def noun_phrase(self, tags: frozenset[str], adj_p: float = 0.3) -> NounPhrase:
        r = self.rng
        noun = r.choice(_nouns_with(tags))
        adj = None
        if r.random() < adj_p:
            adj = r.choice(_adjectives_for(noun.tags)).en
        return NounPhrase(noun.en, r.choice(_DETS), r.random() < 0.3, adj)

    def subject(self, verb: Verb) -> NounPhrase | Pronoun:
        r = self.rng
        if r.random() < 0.3 and verb.subj & _PA:
            persons = _PERSON_PRONOUNS if "P" in verb.subj else ()
            persons += ("3sg_n",) if "A" in verb.subj else ()
            return Pronoun(r.choice(persons))
        return self.noun_phrase(verb.subj)

    def adjunct(self, verb: Verb, subject: NounPhrase | Pronoun) -> Adjunct | None:
        r = self.rng
        kinds = sorted(verb.pps)
        p = 0.5 if verb.valency == "copula" or verb.motion else 0.3
        if not kinds or r.random() > p:
            return None
        kind = r.choice(kinds)
        if kind == "loc":
            if isinstance(subject, NounPhrase) and "L" in NOUN_BY_KEY[subject.noun].tags:
                return None
            return Adjunct(kind, self.noun_phrase(_PLACE, adj_p=0.15))
        if kind == "dir":
            return Adjunct(kind, self.noun_phrase(_P if r.random() < 0.3 else _PLACE, 0.15))
        return Adjunct(kind, self.noun_phrase(_PA if kind == "for" else _PAT, adj_p=0.15))

    def clause(
        self, verb: Verb, *, can_front: bool, present_only: bool, can_negate: bool = True
    ) -> Clause:
        r = self.rng
        subject = self.subject(verb)
        obj = iobj = pred = None
        if verb.valency in ("acc", "dat", "ditr"):
            obj = self.noun_phrase(verb.obj)
        if verb.valency == "ditr":
            iobj = self.noun_phrase(verb.iobj)
        adjunct = self.adjunct(verb, subject)
        if verb.valency == "copula" and adjunct is None:
            tags = NOUN_BY_KEY[subject.noun].tags if isinstance(subject, NounPhrase) else _PA
            if isinstance(subject, Pronoun) and subject.person == "3sg_n":
                tags = frozenset("A")
            pred = r.choice(_adjectives_for(frozenset(tags))).en
        tense, modal = "present", None
        x = r.random()
        if x < 0.15 and verb.modal_ok:
            modal = r.choice(_MODAL_KEYS)
        elif x < 0.5 and not present_only:
            tense = "past"
        negated = can_negate and r.random() < 0.25
        adverb, pos = self.adverb(verb, tense, negated, adjunct, can_front)
        double = verb.en_double_object and r.random() < 0.5
        return Clause(
            subject, verb.key, obj, iobj, pred, adjunct, tense, modal, negated, adverb, pos, double
        )

    def adverb(
        self, verb: Verb, tense: str, negated: bool, adjunct: Adjunct | None, can_front: bool
    ) -> tuple[str | None, str]:
        r = self.rng
        if r.random() > 0.4:
            return None, "end"
        no_place = verb.motion or adjunct is not None or verb.valency == "clause"
        options = [
            a
            for a in ADVERBS
            if tense in a.tenses
            and not (no_place and a.kind == "place")
            and not (negated and a.kind == "freq")
            and (can_front or a.en_positions - {"front"})
        ]
        adverb = r.choice(options)
        positions = adverb.en_positions if can_front else adverb.en_positions - {"front"}
        if verb.valency == "clause" and positions - {"end"}:
            positions -= {"end"}  # "He says today that ..." reads badly
        return adverb.en, r.choice(sorted(positions))

    def sentence(self) -> Sentence:
        r = self.rng
        x = r.random()
        if x < 0.2:
            verb = self.content_verb()
            return Sentence(
                self.clause(verb, can_front=False, present_only=False, can_negate=False),
                question=True,
            )
        if x < 0.5:
            return self.complex_sentence()
        return Sentence(self.clause(self.content_verb(), can_front=True, present_only=False))

    def content_verb(self) -> Verb:
        r = self.rng
        x = r.random()
        valency = (
            ("intr" if x < 0.25 else "acc" if x < 0.6 else "dat" if x < 0.7 else "ditr")
            if x < 0.88
            else "copula"
        )
        return r.choice(_VERBS_BY_VALENCY[valency])

    def complex_sentence(self) -> Sentence:
        r = self.rng
        conj = r.choice(("because", "because", "when", "that"))
        when = conj == "when"
        sub = self.clause(self.content_verb(), can_front=False, present_only=when)
        if conj == "that":
            verb = r.choice(_VERBS_BY_VALENCY["clause"])
            main = self.clause(verb, can_front=True, present_only=False)
            return Sentence(main, conj=conj, sub=sub)
        sub_first = r.random() < 0.35
        main = self.clause(self.content_verb(), can_front=not sub_first, present_only=when)
        return Sentence(main, conj=conj, sub=sub, sub_first=sub_first)


# ----------------------------------------------------------------------------- public API


def _np_count(tags: frozenset[str]) -> int:
    """Distinct noun phrases without adjective or with one (lower bound of the sampler's)."""
    dets = len(set(_DETS))
    return sum(2 * dets * (1 + len(_adjectives_for(n.tags))) for n in _nouns_with(tags))


@cache
def grammar_capacity() -> int:
    """Lower bound of the number of distinct pairs: simple statements (no adverb, adjunct
    or subordinate clause) in three tenses, affirmative or negated."""
    total = 0
    for verb in VERBS:
        if verb.valency in ("clause", "copula"):
            continue
        subjects = _np_count(verb.subj) + len(_PERSON_PRONOUNS)
        objects = _np_count(verb.obj) if verb.obj else 1
        recipients = _np_count(verb.iobj) if verb.iobj else 1
        total += subjects * objects * recipients * 3 * 2
    return total


def generate_translation_pairs(n: int, seed: int = 0) -> list[TranslationPair]:
    """``n`` unique (English, German) sentence pairs, deterministic from ``seed``."""
    if not isinstance(n, int) or n < 0:
        raise ConfigError(f"n must be a non-negative integer, got {n!r}")
    if n > grammar_capacity():
        raise ConfigError(f"n={n} exceeds the grammar's capacity of {grammar_capacity()} pairs")
    sampler = _Sampler(random.Random(seed))
    seen: set[TranslationPair] = set()
    pairs: list[TranslationPair] = []
    attempts, max_attempts = 0, 50 * n + 1000
    while len(pairs) < n:
        attempts += 1
        if attempts > max_attempts:
            raise ConfigError(f"n={n}: only {len(pairs)} unique pairs after {attempts} draws")
        pair = render(sampler.sentence())
        if pair not in seen:
            seen.add(pair)
            pairs.append(pair)
    return pairs


# ----------------------------------------------------------------------------- alignment

_DE_FUNCTION_WORDS = frozenset({"am", "in", "der", "zu"})
_EN_FUNCTION_WORDS = frozenset({"in", "the", "at"})


@cache
def bilingual_lexicon() -> dict[str, frozenset[str]]:
    """Lower-cased German content word form -> English words it may align to."""
    lex: dict[str, set[str]] = {}

    def add(de: str, en: str) -> None:
        lex.setdefault(de.lower(), set()).update(w for w in en.lower().split())

    for noun in NOUNS:
        english = f"{noun.en} {noun.en_pl}"
        for plural in (False, True):
            for case in ("nom", "acc", "dat"):
                add(de_noun(noun, plural, case), english)
    persons = ("1sg", "2sg", "3sg", "1pl", "2pl", "3pl")
    for verb in VERBS:
        if verb.valency == "copula":
            continue
        english = f"{verb.en} {verb.en_3sg} {verb.en_past}"
        for p in persons:
            form = de_present(verb.de, p, verb.de_strong)
            add(form, english)
            add(verb.de_prefix + form, english)
        add(verb.de_part, english)
        add(verb.key, english)
    modal_en = {"can": "can cannot", "want": "want wants", "must": "must have"}
    for key, forms in MODALS.items():
        for form in forms.values():
            add(form, modal_en[key])
    for adj in ADJECTIVES:
        add(adj.de, adj.en)
        for ending in ("e", "en", "er", "es"):
            add(adj.stem + ending, adj.en)
    for adverb in ADVERBS:
        english = " ".join(w for w in adverb.en.split() if w not in _EN_FUNCTION_WORDS)
        for word in adverb.de.split():
            if word.lower() not in _DE_FUNCTION_WORDS:
                add(word, english)
    return {k: frozenset(v) for k, v in lex.items()}


def _words(text: str) -> list[str]:
    return text.lower().replace(",", " ").rstrip(".?").split()


def word_order_differs(pair: TranslationPair) -> bool:
    """True when the German content words cannot be aligned to English ones monotonically.

    Each German word found in :func:`bilingual_lexicon` takes the leftmost matching English
    position at or after the previous one (greedy, which finds a monotone alignment whenever
    one exists); failing that, the word order differs.
    """
    lex = bilingual_lexicon()
    en_words = _words(pair.en)
    last = 0
    for word in _words(pair.de):
        targets = lex.get(word)
        if not targets:
            continue
        positions = [i for i, w in enumerate(en_words) if w in targets]
        if not positions:
            continue
        later = [i for i in positions if i >= last]
        if not later:
            return True
        last = later[0]
    return False
