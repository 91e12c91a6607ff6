"""Tests of the synchronous English -> German grammar of the synthetic translation set."""

from __future__ import annotations

import re
import time

import pytest

from speechkd.data.synth.en_de_grammar import (
    Adjunct,
    Clause,
    NounPhrase,
    Pronoun,
    Sentence,
    TranslationPair,
    generate_translation_pairs,
    grammar_capacity,
    render,
    word_order_differs,
)
from speechkd.data.synth.en_de_morphology import de_present
from speechkd.errors import ConfigError

MAN, WOMAN, CHILD, DOG, CAT = (NounPhrase(n) for n in ("man", "woman", "child", "dog", "cat"))


def pair(clause: Clause, **kw) -> tuple[str, str]:
    return tuple(render(Sentence(clause, **kw)))


@pytest.mark.parametrize(
    ("clause", "kw", "expected"),
    [
        # V2: the finite verb stays second after a fronted adverbial
        (
            Clause(MAN, "sehen", obj=DOG, adverb="today", adverb_pos="front"),
            {},
            ("Today the man sees the dog.", "Heute sieht der Mann den Hund."),
        ),
        # time adverb goes into the middle field
        (
            Clause(MAN, "sehen", obj=DOG, adverb="today"),
            {},
            ("The man sees the dog today.", "Der Mann sieht heute den Hund."),
        ),
        # yes/no question: do-support vs verb-first
        (
            Clause(WOMAN, "sehen", obj=CAT),
            {"question": True},
            ("Does the woman see the cat?", "Sieht die Frau die Katze?"),
        ),
        # separable verb split in a main clause
        (
            Clause(WOMAN, "anrufen", obj=MAN),
            {},
            ("The woman calls the man up.", "Die Frau ruft den Mann an."),
        ),
        (
            Clause(WOMAN, "anrufen", obj=MAN, tense="past"),
            {},
            ("The woman called the man up.", "Die Frau hat den Mann angerufen."),
        ),
        # perfect with sein for motion, haben otherwise; direction "to" -> in + accusative
        (
            Clause(CHILD, "gehen", tense="past", adjunct=Adjunct("dir", NounPhrase("school"))),
            {},
            ("The child went to the school.", "Das Kind ist in die Schule gegangen."),
        ),
        (
            Clause(Pronoun("1pl"), "gehen", adjunct=Adjunct("dir", NounPhrase("doctor"))),
            {},
            ("We go to the doctor.", "Wir gehen zum Arzt."),
        ),
        (
            Clause(CHILD, "sehen", obj=DOG, tense="past"),
            {},
            ("The child saw the dog.", "Das Kind hat den Hund gesehen."),
        ),
        (
            Clause(Pronoun("2sg"), "aufstehen", tense="past"),
            {},
            ("You got up.", "Du bist aufgestanden."),
        ),
        # dative after "mit" with a weak adjective ending; dative plural -n
        (
            Clause(
                NounPhrase("boy"), "spielen", adjunct=Adjunct("with", NounPhrase("dog", adj="big"))
            ),
            {},
            ("The boy plays with the big dog.", "Der Junge spielt mit dem großen Hund."),
        ),
        (
            Clause(
                Pronoun("3sg_f"), "tanzen", adjunct=Adjunct("with", NounPhrase("child", "a", True))
            ),
            {},
            ("She dances with children.", "Sie tanzt mit Kindern."),
        ),
        # mixed and weak declension in the nominative
        (
            Clause(NounPhrase("dog", "a", adj="big"), "schlafen"),
            {},
            ("A big dog sleeps.", "Ein großer Hund schläft."),
        ),
        (
            Clause(NounPhrase("dog", adj="big"), "schlafen"),
            {},
            ("The big dog sleeps.", "Der große Hund schläft."),
        ),
        # adjectives ending in -e take no second e
        (
            Clause(Pronoun("3pl"), "helfen", obj=NounPhrase("baby", "a", adj="tired")),
            {},
            ("They help a tired baby.", "Sie helfen einem müden Baby."),
        ),
        (
            Clause(NounPhrase("horse", "a", adj="tired"), "schlafen"),
            {},
            ("A tired horse sleeps.", "Ein müdes Pferd schläft."),
        ),
        # locative preposition with contraction, n-declension of "Junge"
        (
            Clause(
                WOMAN, "sehen", obj=NounPhrase("boy"), adjunct=Adjunct("loc", NounPhrase("park"))
            ),
            {},
            ("The woman sees the boy in the park.", "Die Frau sieht den Jungen im Park."),
        ),
        # negation: kein for an indefinite object, nicht after a definite one
        (
            Clause(MAN, "sehen", obj=NounPhrase("dog", "a"), negated=True),
            {},
            ("The man does not see a dog.", "Der Mann sieht keinen Hund."),
        ),
        (
            Clause(MAN, "sehen", obj=NounPhrase("dog", "a", plural=True), negated=True),
            {},
            ("The man does not see any dogs.", "Der Mann sieht keine Hunde."),
        ),
        (
            Clause(MAN, "sehen", obj=DOG, negated=True),
            {},
            ("The man does not see the dog.", "Der Mann sieht den Hund nicht."),
        ),
        (
            Clause(MAN, "sein", pred="tired", negated=True, tense="past"),
            {},
            ("The man was not tired.", "Der Mann war nicht müde."),
        ),
        # modal verbs: infinitive at the end; negated "must" is "does not have to"
        (
            Clause(MAN, "sehen", obj=DOG, modal="can"),
            {},
            ("The man can see the dog.", "Der Mann kann den Hund sehen."),
        ),
        (
            Clause(Pronoun("2pl"), "anrufen", obj=WOMAN, modal="want"),
            {},
            ("You all want to call the woman up.", "Ihr wollt die Frau anrufen."),
        ),
        (
            Clause(Pronoun("3sg_m"), "helfen", obj=CHILD, modal="must", negated=True),
            {},
            ("He does not have to help the child.", "Er muss dem Kind nicht helfen."),
        ),
        # dative and ditransitive verbs
        (
            Clause(Pronoun("1sg"), "helfen", obj=NounPhrase("woman", "my", adj="old")),
            {},
            ("I help my old woman.", "Ich helfe meiner alten Frau."),
        ),
        (
            Clause(WOMAN, "geben", obj=NounPhrase("ball", "a"), iobj=CHILD),
            {},
            ("The woman gives a ball to the child.", "Die Frau gibt dem Kind einen Ball."),
        ),
        (
            Clause(WOMAN, "geben", obj=NounPhrase("ball"), iobj=CHILD, en_double_object=True),
            {},
            ("The woman gives the child the ball.", "Die Frau gibt dem Kind den Ball."),
        ),
    ],
)
def test_constructions_render_exactly(clause, kw, expected):
    assert pair(clause, **kw) == expected


def test_subordinate_clauses_are_verb_final():
    main = Clause(Pronoun("1sg"), "lachen")
    sub = Clause(MAN, "sehen", obj=DOG)
    assert render(Sentence(main, conj="because", sub=sub)) == TranslationPair(
        "I laugh because the man sees the dog.", "Ich lache, weil der Mann den Hund sieht."
    )
    sep = Clause(WOMAN, "anrufen", obj=MAN)
    assert render(Sentence(main, conj="because", sub=sep)).de == (
        "Ich lache, weil die Frau den Mann anruft."
    )
    perfect = Clause(WOMAN, "anrufen", obj=MAN, tense="past", negated=True)
    assert render(Sentence(main, conj="because", sub=perfect)).de == (
        "Ich lache, weil die Frau den Mann nicht angerufen hat."
    )
    modal = Clause(Pronoun("1pl"), "kommen", modal="can")
    assert render(Sentence(main, conj="because", sub=modal)).de == (
        "Ich lache, weil wir kommen können."
    )
    says = Clause(NounPhrase("teacher"), "sagen")
    assert render(Sentence(says, conj="that", sub=Clause(DOG, "schlafen"))) == TranslationPair(
        "The teacher says that the dog sleeps.", "Der Lehrer sagt, dass der Hund schläft."
    )


def test_fronted_subordinate_clause_triggers_inversion():
    sentence = Sentence(
        Clause(DOG, "spielen"), conj="when", sub=Clause(MAN, "schlafen"), sub_first=True
    )
    assert render(sentence) == TranslationPair(
        "When the man sleeps, the dog plays.", "Wenn der Mann schläft, spielt der Hund."
    )


def test_german_present_conjugation():
    persons = ("1sg", "2sg", "3sg", "1pl", "2pl", "3pl")
    assert [de_present("sehen", p, "sieh") for p in persons] == [
        "sehe", "siehst", "sieht", "sehen", "seht", "sehen"
    ]  # fmt: skip
    assert [de_present("arbeiten", p) for p in persons] == [
        "arbeite", "arbeitest", "arbeitet", "arbeiten", "arbeitet", "arbeiten"
    ]  # fmt: skip
    assert de_present("tanzen", "2sg") == "tanzt"
    assert de_present("essen", "2sg", "iss") == "isst"
    assert de_present("öffnen", "3sg") == "öffnet"
    assert de_present("wissen", "3sg") == "weiß"


def test_generation_is_deterministic_unique_and_fast():
    start = time.perf_counter()
    pairs = generate_translation_pairs(5000, seed=7)
    elapsed = time.perf_counter() - start
    assert elapsed < 2.0
    assert len(pairs) == 5000 and len(set(pairs)) == 5000
    assert all(isinstance(p, TranslationPair) for p in pairs)
    assert generate_translation_pairs(300, seed=7) == pairs[:300]
    assert generate_translation_pairs(300, seed=8) != pairs[:300]
    assert len({p.en for p in pairs}) > 4000


def test_sentences_are_capitalised_punctuated_and_speakable():
    for en, de in generate_translation_pairs(2000, seed=1):
        assert re.fullmatch(r"[A-Z][A-Za-z ,]*[a-z][.?]", en), en
        assert de[0].isupper() and de[-1] == en[-1], (en, de)
        assert "  " not in en and "  " not in de


def test_capacity_and_bad_n():
    assert grammar_capacity() > 1_000_000
    assert generate_translation_pairs(0) == []
    with pytest.raises(ConfigError):
        generate_translation_pairs(-1)
    with pytest.raises(ConfigError):
        generate_translation_pairs(grammar_capacity() + 1)


def test_word_order_check_and_fraction_of_reordered_pairs():
    monotone = TranslationPair("The man sees the dog.", "Der Mann sieht den Hund.")
    reordered = TranslationPair("The man saw the dog.", "Der Mann hat den Hund gesehen.")
    assert not word_order_differs(monotone)
    assert word_order_differs(reordered)
    pairs = generate_translation_pairs(3000, seed=3)
    fraction = sum(map(word_order_differs, pairs)) / len(pairs)
    assert fraction > 0.3
