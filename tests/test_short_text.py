"""Short texts (LoSh): the subject noun phrase with its appearance, without action/relation."""

from __future__ import annotations

import sys
import types

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rvoslib.data import short_text as short_text_module
from rvoslib.data.short_text import extract_short_text, short_texts


def _split(text: str) -> list[str]:
    return text.split()


# Ref-YouTube-VOS / A2D-Sentences style expressions -> expected short text (built-in rules).
TABLE = [
    ("the man in a red shirt running after the dog", "the man in a red shirt"),
    ("a person on the left wearing a black shirt", "a person"),
    ("a white dog lying on the ground", "a white dog"),
    ("a black and white cat sitting on the bed", "a black and white cat"),
    ("a man in a red shirt holding a guitar", "a man in a red shirt"),
    ("the person on the right side", "the person"),
    ("a giraffe walking to the left", "a giraffe"),
    ("a brown horse running next to a white horse", "a brown horse"),
    ("person riding a bike", "person"),
    ("a duck is swimming in the water", "a duck"),
    ("a small panda in front of a bigger panda", "a small panda"),
    ("a surfer riding a wave", "a surfer"),
    ("the second truck from the left", "the second truck"),
    ("a bird standing on a branch", "a bird"),
    ("a man with a hat", "a man with a hat"),
    ("a lizard being held by a person", "a lizard"),
    ("the leopard which is walking on the rocks", "the leopard"),
    ("a zebra that is eating grass", "a zebra"),
    ("a person wearing a white helmet and riding a motorbike", "a person wearing a white helmet"),
    ("a white car parked on the side of the road", "a white car"),
    ("an eagle flying in the sky", "an eagle"),
    ("man in black shirt is running", "man in black shirt"),
    ("a baby crawling on the floor", "a baby"),
    ("white dog is walking on the grass", "white dog"),
    ("the adult on the left is walking", "the adult"),
    ("small bird flying", "small bird"),
    ("black car driving on the road", "black car"),
    ("girl in pink jumping on trampoline", "girl in pink"),
    ("a red ball rolling on the floor", "a red ball"),
    ("the boy in a blue shirt is climbing the stairs", "the boy in a blue shirt"),
    ("a person in white clothes is jumping", "a person in white clothes"),
    ("man wearing a black jacket rides a bike", "man wearing a black jacket"),
    ("dog runs and jumps", "dog"),
    ("a woman with long hair in a black dress dancing", "a woman with long hair in a black dress"),
    ("a man in a white shirt on the left", "a man in a white shirt"),
    ("a knife held by a hand", "a knife"),
    ("a hand holding a knife", "a hand"),
    ("a fish swims in the tank", "a fish"),
    ("a man strums a guitar", "a man"),
    ("a cat getting petted by a girl", "a cat"),
    ("there is a cat on the bed", "a cat"),
    ("the dog with a red collar running across the field", "the dog with a red collar"),
    ("a monkey with a baby on its back", "a monkey with a baby"),
    ("a man dressed in black walking down the street", "a man dressed in black"),
    ("a girl dressed as a princess", "a girl dressed as a princess"),
    ("a woman in a white shirt and blue jeans standing", "a woman in a white shirt and blue jeans"),
    ("a duck in the water", "a duck"),
    ("a man in a red car", "a man"),
    ("the bigger one", "the bigger one"),
    ("a baby elephant walking behind its mother", "a baby elephant"),
    ("a little girl dancing", "a little girl"),
    ("a sitting dog", "a sitting dog"),
    ("a parked car on the right", "a parked car"),
    ("two dogs playing with a ball", "two dogs"),
    ("a group of people walking", "a group of people"),
    ("the tennis player in white hitting the ball", "the tennis player in white"),
    ("a skateboard under a person", "a skateboard"),
    ("a cat that moves towards the blue square", "a cat"),
    ("the red circle that moves towards the blue square", "the red circle"),
    ("a gray cat slowly walking", "a gray cat"),
    ("a dog, running in the park", "a dog"),
    ("A Man In A Blue Jacket Skiing Down The Hill.", "A Man In A Blue Jacket"),
    ("a horse closest to the camera", "a horse"),
    ("a person's hand reaching for the cup", "a person's hand"),
    ("a black-and-white dog jumping", "a black-and-white dog"),
    ("the man wearing a t-shirt, holding a phone", "the man wearing a t-shirt"),
    ("a bear cub climbing a tree", "a bear cub"),
    ("a woman with a baby in her arms", "a woman with a baby"),
    ("the kid in the middle", "the kid"),
    ("an airplane taking off", "an airplane"),
    ("a frog sits on a leaf", "a frog"),
    ("the deer who is looking at the camera", "the deer"),
    ("a penguin", "a penguin"),
    ("man on the left riding horse", "man"),
    ("a dirt bike driven by a man", "a dirt bike"),
    ("a girl wearing roller skates", "a girl wearing roller skates"),
    ("a man dressed up as a clown", "a man dressed up as a clown"),
    ("a cat on a sofa", "a cat"),
    ("a white dog and a black dog", "a white dog and a black dog"),
    ("on the left a man riding a horse", "on the left a man riding a horse"),
    ("  a red kite flying high.  ", "a red kite"),
]


@pytest.mark.parametrize(("expression", "expected"), TABLE)
def test_builtin_rules_table(expression: str, expected: str) -> None:
    assert extract_short_text(expression) == expected


def test_table_is_large_and_idempotent() -> None:
    assert len(TABLE) >= 40
    for expression, expected in TABLE:
        assert extract_short_text(expected) == expected, expression


def test_short_texts_matches_single_calls() -> None:
    expressions = [expression for expression, _ in TABLE[:10]]
    assert short_texts(expressions) == [extract_short_text(e) for e in expressions]
    assert short_texts(iter(expressions[:2])) == [TABLE[0][1], TABLE[1][1]]
    assert short_texts([]) == []


_VOCABULARY = _split(
    "a the man dog in with wearing red shirt running is on left of and that black cat "
    "riding held by , . next to being small who jumps dressed as"
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(_VOCABULARY), min_size=0, max_size=12))
def test_rules_return_a_stripped_substring(tokens: list[str]) -> None:
    expression = " ".join(tokens)
    result = extract_short_text(expression)
    assert result in expression
    assert result == result.strip()
    assert bool(result) == bool(expression.strip())


def test_type_errors() -> None:
    with pytest.raises(TypeError, match="expression must be a str, got int"):
        extract_short_text(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="got a single str"):
        short_texts("a man running")
    with pytest.raises(TypeError, match=r"expressions\[1\] must be a str, got NoneType"):
        short_texts(["a man", None])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="nlp must be a callable spaCy pipeline, got str"):
        extract_short_text("a man", nlp="en_core_web_sm")  # type: ignore[arg-type]


def test_nlp_and_pipeline_are_exclusive() -> None:
    with pytest.raises(ValueError, match="give nlp or pipeline, not both"):
        extract_short_text("a man", nlp=lambda text: text, pipeline="en_core_web_sm")


def test_pipeline_without_spacy_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    short_text_module._load_pipeline.cache_clear()
    monkeypatch.setitem(sys.modules, "spacy", None)  # import spacy -> ImportError
    with pytest.raises(ImportError, match="pipeline='en_core_web_sm' needs spaCy"):
        extract_short_text("a man", pipeline="en_core_web_sm")
    short_text_module._load_pipeline.cache_clear()


def test_missing_pipeline_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    def load(name: str) -> None:
        raise OSError(f"[E050] Can't find model '{name}'")

    short_text_module._load_pipeline.cache_clear()
    monkeypatch.setitem(sys.modules, "spacy", types.SimpleNamespace(load=load))
    with pytest.raises(ImportError, match="spaCy pipeline 'en_core_web_xx' is not installed"):
        short_texts(["a man"], pipeline="en_core_web_xx")
    short_text_module._load_pipeline.cache_clear()


def test_pipeline_is_loaded_once_and_used(monkeypatch: pytest.MonkeyPatch) -> None:
    loads: list[str] = []

    def load(name: str) -> object:
        loads.append(name)
        return _FakeNlp()

    short_text_module._load_pipeline.cache_clear()
    monkeypatch.setitem(sys.modules, "spacy", types.SimpleNamespace(load=load))
    # a fake parse whose subject head is "dog": the spaCy path, not the rules, decides
    assert extract_short_text("x", pipeline="fake") == "dog"
    assert short_texts(["x", "y"], pipeline="fake") == ["dog", "dog"]
    assert loads == ["fake"]
    short_text_module._load_pipeline.cache_clear()


class _FakeToken:
    def __init__(self, index: int, text: str, dep: str, pos: str) -> None:
        self.i, self.text, self.lower_, self.dep_, self.pos_ = index, text, text, dep, pos
        self.text_with_ws, self.head, self.children = text + " ", self, []


class _FakeNlp:
    """A one-token 'parse' (ROOT noun "dog"), enough to show which path ran."""

    def __call__(self, text: str) -> list[_FakeToken]:
        return [_FakeToken(0, "dog", "ROOT", "NOUN")]  # a token list: no noun_chunks

    def pipe(self, texts: list[str]) -> list[list[_FakeToken]]:
        return [self(text) for text in texts]


# --- spaCy: hand-built parses (needs spaCy, no pipeline) ---------------------------------------

# words, heads (absolute), dependency labels, coarse POS, expected short text. The parses are
# the ones an English dependency parser gives (ClearNLP labels, as spaCy's English pipelines).
PARSES = [
    (
        _split("the man in a red shirt running after the dog"),
        [1, 1, 1, 5, 5, 2, 1, 6, 9, 7],
        _split("det ROOT prep det amod pobj acl prep det pobj"),
        _split("DET NOUN ADP DET ADJ NOUN VERB ADP DET NOUN"),
        "the man in a red shirt",
    ),
    (
        _split("a person is riding a horse"),
        [1, 3, 3, 3, 5, 3],
        _split("det nsubj aux ROOT det dobj"),
        _split("DET NOUN AUX VERB DET NOUN"),
        "a person",
    ),
    (
        _split("a woman wearing a black hat walking a dog"),
        [1, 1, 1, 5, 5, 2, 1, 8, 6],
        _split("det ROOT acl det amod dobj acl det dobj"),
        _split("DET NOUN VERB DET ADJ NOUN VERB DET NOUN"),
        "a woman wearing a black hat",
    ),
    (
        _split("a black and white cat sitting on the bed"),
        [4, 4, 1, 1, 4, 4, 5, 8, 6],
        _split("det amod cc conj ROOT acl prep det pobj"),
        _split("DET ADJ CCONJ ADJ NOUN VERB ADP DET NOUN"),
        "a black and white cat",
    ),
    (
        _split("there is a dog with a red collar on the sofa"),
        [1, 1, 3, 1, 3, 7, 7, 4, 3, 10, 8],
        _split("expl ROOT det attr prep det amod pobj prep det pobj"),
        _split("PRON AUX DET NOUN ADP DET ADJ NOUN ADP DET NOUN"),
        "a dog with a red collar",
    ),
    (
        _split("a duck in the water"),
        [1, 1, 1, 4, 2],
        _split("det ROOT prep det pobj"),
        _split("DET NOUN ADP DET NOUN"),
        "a duck",
    ),
    (
        _split("the dog that is chasing a ball"),
        [1, 1, 4, 4, 1, 6, 4],
        _split("det ROOT nsubj aux relcl det dobj"),
        _split("DET NOUN PRON AUX VERB DET NOUN"),
        "the dog",
    ),
    (
        _split("a person on the left in a white shirt jumping"),
        [1, 1, 1, 4, 2, 1, 8, 8, 5, 1],
        _split("det ROOT prep det pobj prep det amod pobj acl"),
        _split("DET NOUN ADP DET NOUN ADP DET ADJ NOUN VERB"),
        "a person in a white shirt",
    ),
    (
        _split("the tennis player is hitting the ball"),
        [2, 2, 4, 4, 4, 6, 4],
        _split("det compound nsubj aux ROOT det dobj"),
        _split("DET NOUN NOUN AUX VERB DET NOUN"),
        "the tennis player",
    ),
]


@pytest.mark.parametrize(("words", "heads", "deps", "pos", "expected"), PARSES)
def test_spacy_path_on_hand_built_parses(
    words: list[str], heads: list[int], deps: list[str], pos: list[str], expected: str
) -> None:
    spacy = pytest.importorskip("spacy", reason="spaCy is not installed (optional dependency)")
    from spacy.tokens import Doc

    vocab = spacy.blank("en").vocab
    doc = Doc(vocab, words=words, heads=heads, deps=deps, pos=pos)
    assert extract_short_text(" ".join(words), nlp=lambda text: doc) == expected


# --- spaCy: a real English pipeline --------------------------------------------------------

_PIPELINE_CASES = [
    ("a man in a red shirt riding a horse", "a man in a red shirt"),
    ("a person is riding a horse", "a person"),
    ("the dog that is chasing a ball", "the dog"),
    ("a white dog lying on the ground", "a white dog"),
]


@pytest.fixture(scope="module")
def english_pipeline() -> object:
    spacy = pytest.importorskip("spacy", reason="spaCy is not installed (optional dependency)")
    try:
        return spacy.load("en_core_web_sm")
    except OSError:
        pytest.skip("spaCy pipeline en_core_web_sm is not installed (never downloaded in tests)")


@pytest.mark.parametrize(("expression", "expected"), _PIPELINE_CASES)
def test_spacy_pipeline(english_pipeline: object, expression: str, expected: str) -> None:
    assert extract_short_text(expression, nlp=english_pipeline) == expected  # type: ignore[arg-type]
    assert short_texts([expression], nlp=english_pipeline) == [expected]  # type: ignore[arg-type]
