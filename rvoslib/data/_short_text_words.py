"""Word lists and word classes of the built-in short-text rules (:mod:`rvoslib.data.short_text`).

Chosen for the expressions of Ref-YouTube-VOS, Ref-DAVIS and A2D-Sentences: a subject noun
phrase ("a small brown dog"), appearance phrases ("in a red shirt", "with long hair", "wearing a
hat"), then an action ("running", "is eating", "rides a bike", "being held by"), a relative
clause ("that is ...") or a relation ("on the left of", "next to", "behind").
"""

from __future__ import annotations

VOWELS = frozenset("aeiouy")


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


DETERMINERS = _words(
    "a an the this that these those his her its their my your our some another other each "
    "every any both all no either neither such"
)
NUMBERS = _words(
    "two three four five six seven eight nine ten several many few multiple first second third "
    "fourth fifth sixth last 2 3 4 5 6"
)
COLOURS = _words(
    "white black red blue green yellow orange purple pink brown grey gray silver golden gold "
    "beige tan dark light bright pale navy maroon violet cyan turquoise teal khaki cream ivory "
    "olive colorful colourful multicolored multicoloured striped spotted checkered plaid camo "
    "camouflage blond blonde ginger brunette reddish bluish greenish brownish whitish blackish "
    "darker lighter"
)
ADJECTIVES = _words(
    "big small little large huge giant tiny tall short long fat thin skinny slim young old "
    "older younger elderly bigger smaller larger taller shorter biggest smallest largest "
    "tallest shortest longest fluffy furry hairy bald curly straight wet dry dirty clean cute "
    "beautiful pretty handsome wooden metal metallic plastic shiny heavy slow lone single only "
    "whole entire full empty fake real toy stuffed baby-blue long-haired short-haired same "
    "different new very "
    "left right leftmost rightmost middle center centre central front rear top bottom upper "
    "lower near far closest nearest farthest furthest"
)
#: Words that only modify (position/order) and, after the head noun, start a relation.
POSITION_WORDS = _words(
    "left right leftmost rightmost closest nearest farthest furthest closer nearer farther "
    "further next close far opposite alongside away ahead front back top bottom middle center "
    "centre"
)
CLOTHING = _words(
    "shirt shirts t-shirt tshirt tee jacket jackets coat coats dress dresses hat hats cap caps "
    "helmet helmets pants trousers jeans shorts skirt suit suits uniform uniforms clothes "
    "clothing outfit outfits sweater sweaters hoodie top tops vest vests shoe shoes boot boots "
    "glove gloves glasses sunglasses goggles scarf costume costumes jersey jerseys swimsuit "
    "bikini robe gown blouse tie mask apron sock socks sneakers overalls wetsuit sweatshirt "
    "cardigan pajamas pyjamas kimono hood headband bandana collar harness saddle leggings tights "
    "trunks attire garment clothe shades beanie turban veil sari"
)
AUXILIARIES = _words(
    "is are was were be been am being has have had does do did can could will would should "
    "shall may might must seems seem seemed appears appear gets got get keeps kept starts "
    "begins tries isn't aren't wasn't doesn't"
)
RELATIVES = _words(
    "who whom whose which where while whilst when as because since so then until till if "
    "unless though although whereas what whatever that"
)
RELATION_PREPOSITIONS = _words(
    "on at near nearby behind beside besides between under underneath below beneath above "
    "over across along around through throughout towards toward to into onto from by inside "
    "outside against among amongst beyond past after before upon within off out up down via "
    "during for like than about atop except versus vs"
)
ADVERBS = _words(
    "just also still now currently always never almost fast together alone here there again "
    "slowly quickly very really too"
)
#: Words that start an object after a verb ("strums *a* guitar").
OBJECT_STARTERS = _words(
    "a an the his her its their my your some another him them it itself himself herself "
    "something someone its"
)
#: Words that cannot end a short text (the cut would leave them dangling).
DANGLING = DETERMINERS | _words(
    "and or & , - in with without wearing of dressed clothed up as like very"
)
SKIPPED_PREFIXES = (
    ("there", "is"),
    ("there", "are"),
    ("there", "'s"),
    ("there's",),
    ("it's",),
    ("here", "is"),
    ("this", "is"),
    ("it", "is"),
)
#: Nouns that look like "-ing" participles.
ING_NOUNS = _words(
    "clothing building ceiling painting earring sibling duckling gosling seedling sapling "
    "dumpling evening morning wedding pudding awning railing stocking icing frosting lightning "
    "herring viking offspring something anything nothing everything parking crossing landing "
    "opening starling yearling fledgling darling stuffing bowling ring king wing thing"
)
#: Words ending in "-ed" that are not participles.
ED_NON_VERBS = _words("hundred naked wicked sacred ragged rugged jagged beloved kindred bearded")
#: Participles that do not end in "-ed".
IRREGULAR_PARTICIPLES = _words(
    "held ridden driven thrown caught taken hidden fed led eaten bitten seen shown worn stuck "
    "hung sat stood lit laid lain kept bent spun swung struck shot fallen flown drawn blown "
    "grown chosen broken frozen made built bought brought taught found being"
)
#: Words ending in "-ly" that are not adverbs.
LY_NON_ADVERBS = _words(
    "butterfly dragonfly firefly housefly family belly jelly lily bully rally ally holly curly "
    "elderly lovely friendly lonely woolly burly ugly"
)
#: Plural nouns that the "-s verb before an object" rule must not take for verbs.
PLURAL_NOUNS = _words("legs arms hands ears eyes wings feet horns paws stripes spots")

# Verbs whose third-person form is rarely a noun ("waves", "skates", "bikes" are left out).
_VERB_STEMS = _words(
    "run walk jump climb crawl eat fly roll ride swim sit stand lie hold carry drive move push "
    "pull chase follow look stare kick throw catch bite lick drink dance fight hug kiss touch "
    "sniff stretch shake wag hop bounce fall spin turn reach grab lift pick put hang lean rest "
    "sleep perch graze wander approach cross enter exit go come play talk sing laugh cry bark "
    "roar open use try get make take give hit feed raise glide float dive paddle surf tumble "
    "crouch kneel bend nod wiggle scratch groom peck flap step stomp trot gallop slither creep "
    "sneak emerge disappear begin start stay remain wait smile attack observe pass overtake lead "
    "tow park fetch hunt stalk splash shoot aim wipe wash clean brush comb cut cook stir pour "
    "write read film hold grip clutch squeeze press tap pat cuddle nuzzle rub chew nibble munch "
    "sip bathe jog sprint skip leap dash hurry rush flee escape hide peek yawn struggle wrestle "
    "punch slap squat drop toss swat dribble serve spray drag haul tug rise sink tilt rotate "
    "hover soar swoop flutter wear carry point"
)


def _third_person(stem: str) -> str:
    if stem.endswith("y") and stem[-2] not in "aeiou":
        return stem[:-1] + "ies"
    if stem.endswith(("s", "sh", "ch", "x", "z", "o")):
        return stem + "es"
    return stem + "s"


VERB_S_FORMS = frozenset(_third_person(stem) for stem in _VERB_STEMS)


def is_ing_participle(word: str) -> bool:
    return (
        len(word) > 4
        and word.endswith("ing")
        and bool(VOWELS & set(word[:-3]))
        and word not in ING_NOUNS
    )


def is_ed_participle(word: str) -> bool:
    if word in IRREGULAR_PARTICIPLES:
        return True
    return (
        len(word) >= 5
        and word.endswith("ed")
        and not word.endswith("eed")
        and word not in ED_NON_VERBS
    )


def is_adverb(word: str) -> bool:
    if word in ADVERBS:
        return True
    return len(word) > 4 and word.endswith("ly") and word not in LY_NON_ADVERBS


def is_finite_verb(word: str, following: str | None) -> bool:
    """A third-person verb after the subject ("runs", "rides a bike")."""
    if word in VERB_S_FORMS:
        return True
    if (
        len(word) <= 3
        or not word.endswith("s")
        or word.endswith(("ss", "us", "is", "ous", "'s"))
        or word in CLOTHING
        or word in PLURAL_NOUNS
    ):
        return False
    # an unknown "-s" word right before an object ("strums a guitar") is a verb
    return following is not None and following in OBJECT_STARTERS


def is_modifier(word: str) -> bool:
    """Words that modify a noun without being the noun (they do not end the head search)."""
    parts = word.split("-")
    return (
        word in DETERMINERS
        or word in NUMBERS
        or word in ADVERBS
        or word in ("dressed", "clothed")
        or all(part in COLOURS or part in ADJECTIVES for part in parts)
        or word in POSITION_WORDS
    )
