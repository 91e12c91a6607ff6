"""Bilingual English/German vocabulary of the synthetic translation grammar.

Every entry carries what the grammar needs: noun gender, plural and semantic tags; verb
valency, selectional tags, German conjugation classes, participle and perfect auxiliary;
adjective applicability; adverb kind, English positions and compatible tenses.
Semantic tags: ``P`` person, ``A`` animal, ``T`` portable thing, ``X`` fixed thing,
``F`` food, ``R`` readable, ``O`` openable, ``L`` place.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Noun:
    """A countable noun: English singular/plural, German gender, singular/plural, tags."""

    en: str
    en_pl: str
    gender: str  # "m" | "f" | "n"
    de: str
    de_pl: str
    tags: frozenset[str]
    weak: str = ""  # n-declension suffix added outside the nominative singular
    loc: tuple[str, str] | None = None  # place nouns: (English, German) locative preposition
    dir: tuple[str, str, str] | None = None  # (English, German, German case) of direction


@dataclass(frozen=True)
class Verb:
    """A verb with its valency and both languages' morphology."""

    en: str  # base form (without particle)
    en_3sg: str
    en_past: str
    de: str  # infinitive without separable prefix
    de_part: str  # past participle, prefix included
    valency: str  # intr | acc | dat | ditr | clause | copula
    subj: frozenset[str] = frozenset("P")
    obj: frozenset[str] = frozenset()  # accusative (or dative for ``dat``) object tags
    iobj: frozenset[str] = frozenset()  # dative recipient tags of ditransitives
    pps: frozenset[str] = frozenset()  # allowed adjuncts: loc dir with for without
    en_particle: str = ""  # "up" in "picks the child up"
    en_prep: str = ""  # "for" in "looks for the dog"
    de_prefix: str = ""  # separable prefix ("an" in anrufen)
    de_strong: str = ""  # present stem of du/er/sie/es when it changes vowel
    aux: str = "haben"  # perfect auxiliary: haben | sein
    en_double_object: bool = False  # "gives the boy the ball" is idiomatic
    modal_ok: bool = True

    @property
    def key(self) -> str:
        """German infinitive with its prefix: unique across the vocabulary."""
        return self.de_prefix + self.de

    @property
    def motion(self) -> bool:
        return "dir" in self.pps


@dataclass(frozen=True)
class Adjective:
    en: str
    de: str
    tags: frozenset[str]
    de_attr: str = ""  # attributive stem when it differs (teuer -> teur-)

    @property
    def stem(self) -> str:
        return self.de_attr or self.de


@dataclass(frozen=True)
class Adverb:
    en: str
    de: str
    kind: str  # time | freq | place
    en_positions: frozenset[str]  # front | mid | end
    tenses: frozenset[str] = field(default_factory=lambda: frozenset({"present", "past"}))


def _n(spec: str, tags: str, weak: str = "", loc=None, dir=None) -> Noun:
    en, en_pl, gender, de, de_pl = spec.split("|")
    return Noun(en, en_pl, gender, de, de_pl, frozenset(tags), weak, loc, dir)


_IN = ("in", "in")
_INTO = ("to", "in", "acc")

NOUNS: tuple[Noun, ...] = (
    # people
    _n("man|men|m|Mann|Männer", "P"),
    _n("woman|women|f|Frau|Frauen", "P"),
    _n("child|children|n|Kind|Kinder", "P"),
    _n("boy|boys|m|Junge|Jungen", "P", weak="n"),
    _n("girl|girls|n|Mädchen|Mädchen", "P"),
    _n("teacher|teachers|m|Lehrer|Lehrer", "P"),
    _n("doctor|doctors|m|Arzt|Ärzte", "P"),
    _n("friend|friends|m|Freund|Freunde", "P"),
    _n("neighbour|neighbours|m|Nachbar|Nachbarn", "P", weak="n"),
    _n("student|students|m|Student|Studenten", "P", weak="en"),
    _n("brother|brothers|m|Bruder|Brüder", "P"),
    _n("sister|sisters|f|Schwester|Schwestern", "P"),
    _n("mother|mothers|f|Mutter|Mütter", "P"),
    _n("father|fathers|m|Vater|Väter", "P"),
    _n("cook|cooks|m|Koch|Köche", "P"),
    _n("farmer|farmers|m|Bauer|Bauern", "P", weak="n"),
    _n("police officer|police officers|m|Polizist|Polizisten", "P", weak="en"),
    _n("king|kings|m|König|Könige", "P"),
    _n("queen|queens|f|Königin|Königinnen", "P"),
    _n("grandmother|grandmothers|f|Großmutter|Großmütter", "P"),
    _n("uncle|uncles|m|Onkel|Onkel", "P"),
    _n("aunt|aunts|f|Tante|Tanten", "P"),
    _n("baby|babies|n|Baby|Babys", "P"),
    # animals
    _n("dog|dogs|m|Hund|Hunde", "A"),
    _n("cat|cats|f|Katze|Katzen", "A"),
    _n("horse|horses|n|Pferd|Pferde", "A"),
    _n("bird|birds|m|Vogel|Vögel", "A"),
    _n("mouse|mice|f|Maus|Mäuse", "A"),
    _n("cow|cows|f|Kuh|Kühe", "A"),
    _n("monkey|monkeys|m|Affe|Affen", "A", weak="n"),
    _n("lion|lions|m|Löwe|Löwen", "A", weak="n"),
    _n("elephant|elephants|m|Elefant|Elefanten", "A", weak="en"),
    _n("rabbit|rabbits|n|Kaninchen|Kaninchen", "A"),
    _n("duck|ducks|f|Ente|Enten", "A"),
    # things
    _n("ball|balls|m|Ball|Bälle", "T"),
    _n("book|books|n|Buch|Bücher", "TR"),
    _n("letter|letters|m|Brief|Briefe", "TRO"),
    _n("newspaper|newspapers|f|Zeitung|Zeitungen", "TR"),
    _n("table|tables|m|Tisch|Tische", "T"),
    _n("chair|chairs|m|Stuhl|Stühle", "T"),
    _n("key|keys|m|Schlüssel|Schlüssel", "T"),
    _n("bag|bags|f|Tasche|Taschen", "TO"),
    _n("car|cars|n|Auto|Autos", "X"),
    _n("bicycle|bicycles|n|Fahrrad|Fahrräder", "X"),
    _n("watch|watches|f|Uhr|Uhren", "T"),
    _n("lamp|lamps|f|Lampe|Lampen", "T"),
    _n("picture|pictures|n|Bild|Bilder", "T"),
    _n("present|presents|n|Geschenk|Geschenke", "TO"),
    _n("flower|flowers|f|Blume|Blumen", "T"),
    _n("hat|hats|m|Hut|Hüte", "T"),
    _n("dress|dresses|n|Kleid|Kleider", "T"),
    _n("knife|knives|n|Messer|Messer", "T"),
    _n("umbrella|umbrellas|m|Regenschirm|Regenschirme", "TO"),
    _n("window|windows|n|Fenster|Fenster", "XO"),
    _n("door|doors|f|Tür|Türen", "XO"),
    _n("bottle|bottles|f|Flasche|Flaschen", "TO"),
    _n("box|boxes|f|Kiste|Kisten", "TO"),
    # food
    _n("apple|apples|m|Apfel|Äpfel", "F"),
    _n("cake|cakes|m|Kuchen|Kuchen", "F"),
    _n("roll|rolls|n|Brötchen|Brötchen", "F"),
    _n("banana|bananas|f|Banane|Bananen", "F"),
    _n("egg|eggs|n|Ei|Eier", "F"),
    _n("sausage|sausages|f|Wurst|Würste", "F"),
    _n("tomato|tomatoes|f|Tomate|Tomaten", "F"),
    _n("carrot|carrots|f|Karotte|Karotten", "F"),
    _n("cookie|cookies|m|Keks|Kekse", "F"),
    _n("pear|pears|f|Birne|Birnen", "F"),
    _n("sandwich|sandwiches|n|Sandwich|Sandwiches", "F"),
    # places (locative and directional prepositions differ from English)
    _n("house|houses|n|Haus|Häuser", "L", loc=_IN, dir=("into", "in", "acc")),
    _n("park|parks|m|Park|Parks", "L", loc=_IN, dir=_INTO),
    _n("garden|gardens|m|Garten|Gärten", "L", loc=_IN, dir=("into", "in", "acc")),
    _n("school|schools|f|Schule|Schulen", "L", loc=("at", "in"), dir=_INTO),
    _n("church|churches|f|Kirche|Kirchen", "L", loc=_IN, dir=_INTO),
    _n("city|cities|f|Stadt|Städte", "L", loc=_IN, dir=_INTO),
    _n("forest|forests|m|Wald|Wälder", "L", loc=_IN, dir=("into", "in", "acc")),
    _n("kitchen|kitchens|f|Küche|Küchen", "L", loc=_IN, dir=("into", "in", "acc")),
    _n("station|stations|m|Bahnhof|Bahnhöfe", "L", loc=("at", "an"), dir=("to", "zu", "dat")),
    _n("shop|shops|m|Laden|Läden", "L", loc=_IN, dir=_INTO),
    _n("office|offices|n|Büro|Büros", "L", loc=_IN, dir=_INTO),
    _n("room|rooms|n|Zimmer|Zimmer", "L", loc=_IN, dir=("into", "in", "acc")),
    _n("library|libraries|f|Bibliothek|Bibliotheken", "L", loc=_IN, dir=_INTO),
    _n("restaurant|restaurants|n|Restaurant|Restaurants", "L", loc=_IN, dir=_INTO),
    _n("beach|beaches|m|Strand|Strände", "L", loc=("on", "an"), dir=("to", "an", "acc")),
    _n("lake|lakes|m|See|Seen", "L", loc=("at", "an"), dir=("to", "an", "acc")),
)

# Going "to" a person is "zu" + dative in German ("to the doctor" -> "zum Arzt").
PERSON_DIR: tuple[str, str, str] = ("to", "zu", "dat")


def _v(en: str, de: str, valency: str, **kw) -> Verb:
    """``en`` = "base|3sg|past", ``de`` = "infinitive|participle"."""
    base, third, past = en.split("|")
    inf, part = de.split("|")
    for key in ("subj", "obj", "iobj"):
        if key in kw:
            kw[key] = frozenset(kw[key])
    if "pps" in kw:
        kw["pps"] = frozenset(kw["pps"].split())
    return Verb(base, third, past, inf, part, valency, **kw)


_ANY = "PATXFRL"
_PA = "PA"
VERBS: tuple[Verb, ...] = (
    # intransitive
    _v(
        "sleep|sleeps|slept",
        "schlafen|geschlafen",
        "intr",
        subj=_PA,
        de_strong="schläf",
        pps="loc with without",
    ),
    _v(
        "run|runs|ran",
        "laufen|gelaufen",
        "intr",
        subj=_PA,
        de_strong="läuf",
        aux="sein",
        pps="dir with without",
    ),
    _v("come|comes|came", "kommen|gekommen", "intr", subj=_PA, aux="sein", pps="dir with without"),
    _v("go|goes|went", "gehen|gegangen", "intr", subj=_PA, aux="sein", pps="dir with without"),
    _v(
        "drive|drives|drove",
        "fahren|gefahren",
        "intr",
        de_strong="fähr",
        aux="sein",
        pps="dir with without",
    ),
    _v("work|works|worked", "arbeiten|gearbeitet", "intr", pps="loc with for without"),
    _v("laugh|laughs|laughed", "lachen|gelacht", "intr", pps="loc with"),
    _v("sing|sings|sang", "singen|gesungen", "intr", subj=_PA, pps="loc with for"),
    _v(
        "swim|swims|swam", "schwimmen|geschwommen", "intr", subj=_PA, aux="sein", pps="with without"
    ),
    _v("dance|dances|danced", "tanzen|getanzt", "intr", pps="loc with for without"),
    _v("wait|waits|waited", "warten|gewartet", "intr", subj=_PA, pps="loc with for"),
    _v("play|plays|played", "spielen|gespielt", "intr", subj=_PA, pps="loc with without"),
    _v(
        "get|gets|got",
        "stehen|aufgestanden",
        "intr",
        en_particle="up",
        de_prefix="auf",
        aux="sein",
        subj=_PA,
    ),
    _v(
        "fall|falls|fell",
        "schlafen|eingeschlafen",
        "intr",
        en_particle="asleep",
        de_prefix="ein",
        de_strong="schläf",
        aux="sein",
        subj=_PA,
        pps="loc",
    ),
    _v("cry|cries|cried", "weinen|geweint", "intr", subj=_PA, pps="loc"),
    # transitive with an accusative object
    _v("see|sees|saw", "sehen|gesehen", "acc", subj=_PA, obj=_ANY, de_strong="sieh", pps="loc"),
    _v("buy|buys|bought", "kaufen|gekauft", "acc", obj="TFAX", pps="for"),
    _v("find|finds|found", "finden|gefunden", "acc", subj=_PA, obj="TPA", pps="loc"),
    _v(
        "look|looks|looked",
        "suchen|gesucht",
        "acc",
        subj=_PA,
        obj="TPAX",
        en_prep="for",
        pps="loc for",
    ),
    _v("need|needs|needed", "brauchen|gebraucht", "acc", subj=_PA, obj="TFX"),
    _v("love|loves|loved", "lieben|geliebt", "acc", subj=_PA, obj=_PA),
    _v("visit|visits|visited", "besuchen|besucht", "acc", obj="PL", pps="with without"),
    _v("eat|eats|ate", "essen|gegessen", "acc", subj=_PA, obj="F", de_strong="iss", pps="loc with"),
    _v("read|reads|read", "lesen|gelesen", "acc", obj="R", de_strong="lies", pps="loc for"),
    _v("take|takes|took", "nehmen|genommen", "acc", subj=_PA, obj="TF", de_strong="nimm"),
    _v(
        "carry|carries|carried",
        "tragen|getragen",
        "acc",
        subj=_PA,
        obj="TA",
        de_strong="träg",
        pps="for",
    ),
    _v("paint|paints|painted", "malen|gemalt", "acc", obj=_ANY, pps="loc for"),
    _v("call|calls|called", "rufen|angerufen", "acc", obj="P", en_particle="up", de_prefix="an"),
    _v(
        "pick|picks|picked",
        "holen|abgeholt",
        "acc",
        obj="PT",
        en_particle="up",
        de_prefix="ab",
        pps="for",
    ),
    _v(
        "bring|brings|brought",
        "bringen|mitgebracht",
        "acc",
        obj="TFA",
        en_particle="along",
        de_prefix="mit",
        pps="for",
    ),
    _v("open|opens|opened", "öffnen|geöffnet", "acc", obj="O", pps="for"),
    _v("know|knows|knew", "kennen|gekannt", "acc", obj="PAL"),
    _v("forget|forgets|forgot", "vergessen|vergessen", "acc", obj="TP", de_strong="vergiss"),
    _v(
        "photograph|photographs|photographed",
        "fotografieren|fotografiert",
        "acc",
        obj=_ANY,
        pps="loc",
    ),
    _v("wash|washes|washed", "waschen|gewaschen", "acc", obj="PATX", de_strong="wäsch", pps="loc"),
    _v("lose|loses|lost", "verlieren|verloren", "acc", obj="T", pps="loc"),
    _v(
        "catch|catches|caught",
        "fangen|gefangen",
        "acc",
        subj=_PA,
        obj="A",
        de_strong="fäng",
        pps="loc",
    ),
    # dative object
    _v(
        "help|helps|helped",
        "helfen|geholfen",
        "dat",
        subj=_PA,
        obj=_PA,
        de_strong="hilf",
        pps="loc",
    ),
    _v("thank|thanks|thanked", "danken|gedankt", "dat", obj="P"),
    _v("follow|follows|followed", "folgen|gefolgt", "dat", subj=_PA, obj=_PA, aux="sein"),
    _v("answer|answers|answered", "antworten|geantwortet", "dat", obj="P"),
    _v(
        "listen|listens|listened",
        "hören|zugehört",
        "dat",
        subj=_PA,
        obj=_PA,
        en_prep="to",
        de_prefix="zu",
    ),
    _v("congratulate|congratulates|congratulated", "gratulieren|gratuliert", "dat", obj="P"),
    _v("wave|waves|waved", "winken|gewinkt", "dat", obj="P", en_prep="to"),
    # ditransitive: dative recipient and accusative theme
    _v(
        "give|gives|gave",
        "geben|gegeben",
        "ditr",
        obj="TF",
        iobj=_PA,
        de_strong="gib",
        en_double_object=True,
    ),
    _v("show|shows|showed", "zeigen|gezeigt", "ditr", obj="TFAXL", iobj="P", en_double_object=True),
    _v("send|sends|sent", "schicken|geschickt", "ditr", obj="TF", iobj="P", en_double_object=True),
    _v(
        "bring|brings|brought",
        "bringen|gebracht",
        "ditr",
        obj="TF",
        iobj=_PA,
        en_double_object=True,
    ),
    _v("lend|lends|lent", "leihen|geliehen", "ditr", obj="TX", iobj="P", en_double_object=True),
    _v(
        "recommend|recommends|recommended",
        "empfehlen|empfohlen",
        "ditr",
        obj="RFL",
        iobj="P",
        de_strong="empfiehl",
    ),
    _v(
        "sell|sells|sold", "verkaufen|verkauft", "ditr", obj="TFAX", iobj="P", en_double_object=True
    ),
    # verbs taking a "that" clause
    _v("know|knows|knew", "wissen|gewusst", "clause", modal_ok=False),
    _v("say|says|said", "sagen|gesagt", "clause", modal_ok=False),
    _v("believe|believes|believed", "glauben|geglaubt", "clause", modal_ok=False),
    _v("think|thinks|thought", "denken|gedacht", "clause", modal_ok=False),
    _v("hope|hopes|hoped", "hoffen|gehofft", "clause", modal_ok=False),
    # copula with a predicative adjective or a locative phrase
    _v("be|is|was", "sein|gewesen", "copula", subj=_ANY, aux="sein", pps="loc"),
)

COPULA: Verb = VERBS[-1]


def _a(en: str, de: str, tags: str, de_attr: str = "") -> Adjective:
    return Adjective(en, de, frozenset(tags), de_attr)


ADJECTIVES: tuple[Adjective, ...] = (
    _a("big", "groß", _ANY),
    _a("small", "klein", _ANY),
    _a("old", "alt", "PATXL"),
    _a("young", "jung", "PA"),
    _a("new", "neu", "TXL"),
    _a("beautiful", "schön", _ANY),
    _a("ugly", "hässlich", "ATXL"),
    _a("good", "gut", "PATXFRL"),
    _a("bad", "schlecht", "TXFRL"),
    _a("red", "rot", "TXF"),
    _a("blue", "blau", "TX"),
    _a("green", "grün", "TXF"),
    _a("black", "schwarz", "ATX"),
    _a("white", "weiß", "ATX"),
    _a("yellow", "gelb", "TXF"),
    _a("tired", "müde", "PA"),
    _a("happy", "glücklich", "PA"),
    _a("sad", "traurig", "PA"),
    _a("hungry", "hungrig", "PA"),
    _a("clever", "klug", "PA"),
    _a("friendly", "freundlich", "PAL"),
    _a("loud", "laut", "PAL"),
    _a("quiet", "ruhig", "PAL"),
    _a("expensive", "teuer", "TXFL", de_attr="teur"),
    _a("cheap", "billig", "TXFL"),
    _a("warm", "warm", "FL"),
    _a("cold", "kalt", "FL"),
    _a("fast", "schnell", "PAX"),
    _a("slow", "langsam", "PAX"),
    _a("funny", "lustig", "PAR"),
    _a("strong", "stark", "PA"),
    _a("sick", "krank", "PA"),
    _a("interesting", "interessant", "PRL"),
    _a("fresh", "frisch", "F"),
    _a("dirty", "schmutzig", "PATXL"),
    _a("clean", "sauber", "TXL"),
)

_FE = frozenset({"front", "end"})
_PRES = frozenset({"present"})
_PAST = frozenset({"past"})
ADVERBS: tuple[Adverb, ...] = (
    Adverb("today", "heute", "time", _FE),
    Adverb("tomorrow", "morgen", "time", _FE, _PRES),
    Adverb("yesterday", "gestern", "time", _FE, _PAST),
    Adverb("now", "jetzt", "time", _FE, _PRES),
    Adverb("soon", "bald", "time", _FE, _PRES),
    Adverb("later", "später", "time", _FE),
    Adverb("in the morning", "am Morgen", "time", _FE),
    Adverb("in the evening", "am Abend", "time", _FE),
    Adverb("at night", "in der Nacht", "time", _FE),
    Adverb("often", "oft", "freq", frozenset({"front", "mid"})),
    Adverb("sometimes", "manchmal", "freq", frozenset({"front", "mid"})),
    Adverb("always", "immer", "freq", frozenset({"mid"})),
    Adverb("usually", "meistens", "freq", frozenset({"mid"})),
    Adverb("here", "hier", "place", _FE),
    Adverb("there", "dort", "place", _FE),
    Adverb("outside", "draußen", "place", _FE),
    Adverb("at home", "zu Hause", "place", _FE),
    Adverb("upstairs", "oben", "place", _FE),
    Adverb("downstairs", "unten", "place", _FE),
)

# English/German subject pronouns by grammatical person.
PRONOUNS: dict[str, tuple[str, str]] = {
    "1sg": ("I", "ich"),
    "2sg": ("you", "du"),
    "3sg_m": ("he", "er"),
    "3sg_f": ("she", "sie"),
    "3sg_n": ("it", "es"),
    "1pl": ("we", "wir"),
    "2pl": ("you all", "ihr"),
    "3pl": ("they", "sie"),
}

# English determiner key -> German determiner stem. "ein" words and "dies-" decline.
DETERMINERS: dict[str, str] = {
    "the": "d",
    "this": "dies",
    "a": "ein",
    "no": "kein",
    "my": "mein",
    "your": "dein",
    "his": "sein",
    "her": "ihr",
    "our": "unser",
    "their": "ihr",
}

# (English, German, case) of the preposition of each adjunct kind that is not noun-specific.
ADJUNCT_PREPOSITIONS: dict[str, tuple[str, str, str]] = {
    "with": ("with", "mit", "dat"),
    "for": ("for", "für", "acc"),
    "without": ("without", "ohne", "acc"),
}

# Modals: English (statement, negated, question-auxiliary form) and German present forms.
MODALS: dict[str, dict[str, str]] = {
    "can": {
        "de": "können",
        "1sg": "kann",
        "2sg": "kannst",
        "3sg": "kann",
        "1pl": "können",
        "2pl": "könnt",
        "3pl": "können",
    },
    "want": {
        "de": "wollen",
        "1sg": "will",
        "2sg": "willst",
        "3sg": "will",
        "1pl": "wollen",
        "2pl": "wollt",
        "3pl": "wollen",
    },
    "must": {
        "de": "müssen",
        "1sg": "muss",
        "2sg": "musst",
        "3sg": "muss",
        "1pl": "müssen",
        "2pl": "müsst",
        "3pl": "müssen",
    },
}

# Subordinating conjunctions: English -> German.
CONJUNCTIONS: dict[str, str] = {"because": "weil", "when": "wenn", "that": "dass"}
