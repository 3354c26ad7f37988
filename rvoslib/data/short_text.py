"""Subject-centric short expressions (LoSh): the referred object without its action or relation.

LoSh (Yuan et al., CVPR 2024) pairs every referring expression with a *short text*: the subject
noun phrase with its appearance modifiers, without the action and relation part
("the man in a red shirt running after the dog" -> "the man in a red shirt"). The released code
reads them precomputed ("via the spaCy tool"); this module computes them:

* with spaCy and an English pipeline that you name (``nlp=spacy.load("en_core_web_sm")`` or
  ``pipeline="en_core_web_sm"``): the subject's noun chunk from the dependency parse, plus the
  appearance modifiers attached to it ("in/with/of ...", "wearing ...", "dressed in ...");
* otherwise with a built-in rule-based extractor (no download, no dependency) that keeps the
  leading noun phrase and its appearance phrases and stops at the first verb, participle,
  relative clause or relation word. Its word lists live in :mod:`rvoslib.data._short_text_words`.

Neither path is chosen silently: the built-in rules run unless a pipeline is given, so that
the same call gives the same short texts on every machine.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from rvoslib.data import _short_text_words as words

__all__ = ["extract_short_text", "short_texts"]

_TOKEN = re.compile(r"[’']s\b|[A-Za-z0-9]+(?:[-’'][A-Za-z0-9]+)*|[^\sA-Za-z0-9]")
_KEEP, _STOP, _PHRASE = "keep", "stop", "phrase"
_DRESS_LINKS = frozenset(("in", "as", "like", "up", "all"))
_FUNCTION_WORDS = _DRESS_LINKS | {"and", "or", "&"}


def extract_short_text(
    expression: str, nlp: Callable[[str], Any] | None = None, *, pipeline: str | None = None
) -> str:
    """The subject noun phrase of a referring expression, with its appearance modifiers.

    Args:
        expression: A referring expression, e.g. ``"a man in a red shirt riding a horse"``.
        nlp: A loaded spaCy pipeline (anything that maps a string to a parsed ``Doc``). When
            given, the dependency parse decides; otherwise the built-in rules do.
        pipeline: The name (or path) of an installed spaCy pipeline to load, e.g.
            ``"en_core_web_sm"``; loaded once and cached. Give ``nlp`` or ``pipeline``, not both.

    Returns:
        The short text: a substring of ``expression`` for the built-in rules (the leading
        noun phrase and its appearance phrases), the subject's kept tokens in order for spaCy.
        When no subject is found, the stripped expression.

    Raises:
        TypeError: ``expression`` is not a string.
        ValueError: both ``nlp`` and ``pipeline`` are given.
        ImportError: ``pipeline`` is given but spaCy or the pipeline is not installed.

    Example:
        >>> extract_short_text("the man in a red shirt running after the dog")
        'the man in a red shirt'
        >>> extract_short_text("white dog is walking on the grass")
        'white dog'
    """
    if not isinstance(expression, str):
        raise TypeError(f"expression must be a str, got {type(expression).__name__}")
    nlp = _resolve_nlp(nlp, pipeline)
    if nlp is None:
        return _rule_short_text(expression)
    return _spacy_short_text(nlp(expression), expression)


def short_texts(
    expressions: Iterable[str],
    nlp: Callable[[str], Any] | None = None,
    *,
    pipeline: str | None = None,
) -> list[str]:
    """:func:`extract_short_text` for many expressions (spaCy pipelines run with ``nlp.pipe``).

    Args:
        expressions: Referring expressions.
        nlp: A loaded spaCy pipeline, or ``None`` for the built-in rules.
        pipeline: The name of an installed spaCy pipeline to load instead of ``nlp``.

    Returns:
        One short text per expression, in order.

    Raises:
        TypeError: ``expressions`` is a single string, or one of them is not a string.
        ValueError: both ``nlp`` and ``pipeline`` are given.
        ImportError: ``pipeline`` is given but spaCy or the pipeline is not installed.

    Example:
        >>> short_texts(["a cat sitting on a sofa", "person riding a bike"])
        ['a cat', 'person']
    """
    if isinstance(expressions, str):
        raise TypeError("expressions must be an iterable of strings, got a single str")
    expressions = list(expressions)
    for index, expression in enumerate(expressions):
        if not isinstance(expression, str):
            raise TypeError(f"expressions[{index}] must be a str, got {type(expression).__name__}")
    nlp = _resolve_nlp(nlp, pipeline)
    if nlp is None:
        return [_rule_short_text(expression) for expression in expressions]
    docs = nlp.pipe(expressions) if hasattr(nlp, "pipe") else map(nlp, expressions)
    return [_spacy_short_text(doc, text) for doc, text in zip(docs, expressions)]


def _resolve_nlp(nlp: Callable[[str], Any] | None, pipeline: str | None) -> Any:
    if nlp is not None and pipeline is not None:
        raise ValueError(f"give nlp or pipeline, not both (pipeline={pipeline!r})")
    if nlp is not None and not callable(nlp):
        raise TypeError(f"nlp must be a callable spaCy pipeline, got {type(nlp).__name__}")
    return _load_pipeline(pipeline) if pipeline is not None else nlp


@functools.lru_cache(maxsize=4)
def _load_pipeline(name: str) -> Any:
    try:
        import spacy
    except ImportError as error:
        raise ImportError(
            f"pipeline={name!r} needs spaCy, which is not installed: pip install spacy, then "
            f"install the pipeline (python -m spacy download {name})"
        ) from error
    try:
        return spacy.load(name)
    except OSError as error:
        raise ImportError(
            f"spaCy pipeline {name!r} is not installed (python -m spacy download {name}): {error}"
        ) from error


# ---------------------------------------------------------------------------------------------
# Built-in rules
# ---------------------------------------------------------------------------------------------


class _Token:
    __slots__ = ("end", "lower", "start", "text")

    def __init__(self, match: re.Match[str]) -> None:
        self.text, self.start, self.end = match.group(), match.start(), match.end()
        self.lower = self.text.lower().replace("’", "'")


def _is_word(token: _Token | None) -> bool:
    return token is not None and (token.lower[0].isalnum() or token.lower == "'s")


def _verb_like(token: _Token | None, following: _Token | None) -> bool:
    """Whether ``token`` starts a predicate (what ends the noun phrase after "and" or ",")."""
    if token is None:
        return True
    word = token.lower
    return (
        not _is_word(token)
        or word in words.AUXILIARIES
        or word in words.RELATIVES
        or word in words.RELATION_PREPOSITIONS
        or words.is_ing_participle(word)
        or words.is_ed_participle(word)
        or words.is_finite_verb(word, following.lower if following else None)
        or words.is_adverb(word)
    )


def _in_is_appearance(tokens: Sequence[_Token], index: int) -> bool:
    """Whether ``in`` at ``index`` opens an appearance phrase ("in a red shirt", "in black")."""
    content: list[str] = []
    for position in range(index + 1, len(tokens)):
        token = tokens[position]
        word = token.lower
        if not _is_word(token) or word in words.RELATION_PREPOSITIONS or word in words.RELATIVES:
            break
        if word in words.AUXILIARIES or word in ("in", "with", "wearing", "of"):
            break
        if content and (words.is_ing_participle(word) or words.is_ed_participle(word)):
            break
        if word in words.DETERMINERS or word in ("and", "or"):
            continue
        content.append(word)
    if not content:
        return False
    parts = [part for word in content for part in word.split("-")]
    if any(part in words.CLOTHING for part in parts):
        return True
    return all(part in words.COLOURS for part in parts)


def _classify(tokens: Sequence[_Token], index: int, has_noun: bool) -> str:
    """``keep``, ``stop`` or ``phrase`` (keep, and a new appearance noun phrase starts)."""
    token = tokens[index]
    following = tokens[index + 1] if index + 1 < len(tokens) else None
    word = token.lower
    if not _is_word(token):
        return _STOP if has_noun or word not in (",", "-") else _KEEP
    if _after_dressed(tokens, index) and word in _DRESS_LINKS:
        return _KEEP
    if word in ("that", "this", "these", "those") and not has_noun:
        return _KEEP
    if word in words.RELATIVES or word in words.AUXILIARIES or word in ("not", "n't"):
        return _STOP
    if word in ("with", "without", "wearing"):
        return _PHRASE
    if word in ("dressed", "clothed") and following is not None and following.lower in _DRESS_LINKS:
        return _PHRASE
    if word == "of":
        return _PHRASE
    if word == "in":
        return _PHRASE if _in_is_appearance(tokens, index) else _STOP
    if word in words.RELATION_PREPOSITIONS:  # a leading one: no subject phrase to cut
        return _STOP
    if word in ("and", "or", "&"):
        if not has_noun:
            return _KEEP
        after = tokens[index + 2] if index + 2 < len(tokens) else None
        return _STOP if _verb_like(following, after) else _PHRASE
    if not has_noun:
        return _KEEP
    if word in words.POSITION_WORDS or words.is_adverb(word):
        return _STOP
    next_word = following.lower if following is not None else None
    if words.is_ing_participle(word) or words.is_ed_participle(word):
        return _STOP
    if words.is_finite_verb(word, next_word):
        return _STOP
    return _KEEP


def _after_dressed(tokens: Sequence[_Token], index: int) -> bool:
    """Whether ``index`` directly follows "dressed"/"clothed" (or "dressed up")."""
    previous = [token.lower for token in tokens[max(0, index - 2) : index]]
    dressed = ("dressed", "clothed")
    return bool(previous) and (
        previous[-1] in dressed or (previous[-1] in ("up", "all") and previous[0] in dressed)
    )


def _skip_prefix(tokens: Sequence[_Token]) -> int:
    lowered = [token.lower for token in tokens[:3]]
    for prefix in words.SKIPPED_PREFIXES:
        if lowered[: len(prefix)] == list(prefix):
            return len(prefix)
    return 0


def _rule_short_text(expression: str) -> str:
    tokens = [_Token(match) for match in _TOKEN.finditer(expression)]
    start = _skip_prefix(tokens)
    has_noun, last = False, None
    in_phrase = False  # inside an appearance phrase, where a colour alone ends the phrase
    for index in range(start, len(tokens)):
        decision = _classify(tokens, index, has_noun)
        if decision == _STOP:
            break
        last = index
        if decision == _PHRASE:
            has_noun, in_phrase = False, True
            continue
        word = tokens[index].lower
        if not _is_word(tokens[index]) or word in _FUNCTION_WORDS:
            continue
        if in_phrase:  # "in pink jumping", "with long hair": any content word counts
            has_noun = has_noun or (word not in words.DETERMINERS and word not in words.NUMBERS)
        elif not words.is_modifier(word):
            has_noun = True
    if last is None:
        return expression.strip()
    while last >= start and tokens[last].lower in words.DANGLING:
        last -= 1
    if last < start:
        return expression.strip()
    return expression[tokens[start].start : tokens[last].end].strip()


# ---------------------------------------------------------------------------------------------
# spaCy
# ---------------------------------------------------------------------------------------------

_NOMINAL = ("NOUN", "PROPN", "PRON", "NUM")
_SUBJECT_DEPS = ("nsubj", "nsubjpass", "csubj")
_MODIFIER_DEPS = words._words(
    "det predet amod compound nummod poss case nmod quantmod nn hmod hyph npadvmod"
)


def _spacy_short_text(doc: Any, expression: str) -> str:
    head = _spacy_subject(doc)
    if head is None:
        return expression.strip()
    keep: set[int] = set()
    _collect_noun_phrase(head, keep)
    chunk = next((chunk for chunk in _noun_chunks(doc) if chunk.root.i == head.i), None)
    if chunk is not None:
        keep.update(range(chunk.start, chunk.end))
    kept = [token for token in doc if token.i in keep]
    while kept and kept[-1].lower_ in words.DANGLING:
        kept.pop()
    text = "".join(token.text_with_ws for token in kept).strip()
    return text or expression.strip()


def _noun_chunks(doc: Any) -> list[Any]:
    try:
        return list(doc.noun_chunks)
    except (AttributeError, NotImplementedError, ValueError):  # no syntax iterator / no parse
        return []


def _spacy_subject(doc: Any) -> Any:
    """The head noun of the subject: a fragment's root noun, or the main verb's subject."""
    tokens = list(doc)
    roots = [token for token in tokens if token.head.i == token.i]
    if not roots:
        return None
    root = roots[0]
    if root.pos_ in _NOMINAL:
        return root
    for child in root.children:
        if child.dep_ in _SUBJECT_DEPS:
            return child
    for child in root.children:  # "there is a man ..." -> the attribute
        if child.dep_ in ("attr", "dobj") and child.pos_ in _NOMINAL:
            return child
    chunks = _noun_chunks(doc)
    if chunks:
        return chunks[0].root
    return next((token for token in tokens if token.pos_ in ("NOUN", "PROPN")), None)


def _collect_noun_phrase(token: Any, keep: set[int]) -> None:
    keep.add(token.i)
    children = list(token.children)
    for child in children:
        if _keep_child(child, token):
            _collect_noun_phrase(child, keep)
    for child in children:  # a coordinator stays only with the conjunct it joins
        if child.dep_ == "cc" and any(c.dep_ == "conj" and c.i in keep for c in children):
            keep.add(child.i)


def _keep_child(child: Any, parent: Any) -> bool:
    dep, word = child.dep_, child.lower_
    if dep in _MODIFIER_DEPS or dep == "pobj" or (dep == "advmod" and child.i < parent.i):
        return True
    if dep == "punct":
        return child.i < parent.i and word in ("-",)
    if dep == "conj":  # "black and white", "a shirt and jeans"; not "running and jumping"
        return child.pos_ not in ("VERB", "AUX")
    if dep == "prep":
        if word in ("with", "without", "of"):
            return True
        if word in ("in", "as", "like") and parent.lower_ in ("dressed", "clothed"):
            return True
        return word == "in" and _parse_in_is_appearance(child)
    if dep in ("dobj", "prt") and parent.lower_ in ("wearing", "dressed", "clothed"):
        return True
    if dep in ("acl", "amod", "advcl", "relcl") and word in ("wearing", "dressed", "clothed"):
        return child.i > parent.i and dep != "relcl"
    return False


def _parse_in_is_appearance(preposition: Any) -> bool:
    content = [
        part
        for token in preposition.subtree
        if token.i != preposition.i and token.lower_ not in words.DETERMINERS
        for part in token.lower_.split("-")
        if part.isalnum() and part not in ("and", "or")
    ]
    if not content:
        return False
    if any(part in words.CLOTHING for part in content):
        return True
    return all(part in words.COLOURS for part in content)
