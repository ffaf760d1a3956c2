"""The grounding-markup parser: any chunking gives what the whole answer gives (hypothesis)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from plugin.cohere.citations import CitationMarkup, Span

KNOWN = {"doc_0", "doc_1", "call_1"}

FRAGMENTS = ["<co: doc_0>", "<co: doc_1,doc_0>", "<co:doc_1>", "</co: doc_0>", "</co>", "</co: doc_1>",
             "<co: nowhere>", "<co: >", "<co:", "</co", "<c", "</", "<", ">", "<b>", "a < b", "x",
             "Paris ", "é", "\n", " ", "<co: call_1>", "<co: doc_0" + "y" * 300, "</co " + "z" * 10 + ">"]


def parse_whole(answer: str) -> tuple[str, list[Span]]:
    markup = CitationMarkup(KNOWN)
    text, spans = markup.feed(answer)
    rest, more = markup.finish()
    return text + rest, spans + more


def parse_chunked(answer: str, cuts: list[int]) -> tuple[str, list[Span]]:
    markup = CitationMarkup(KNOWN)
    pieces, spans = [], []
    points = sorted({0, len(answer), *(c % (len(answer) + 1) for c in cuts)})
    for a, b in zip(points, points[1:], strict=False):
        text, found = markup.feed(answer[a:b])
        pieces.append(text)
        spans.extend(found)
    text, found = markup.finish()
    return "".join(pieces) + text, spans + found


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=30), st.lists(st.integers(min_value=0), max_size=12))
def test_any_chunking_gives_the_same_text_and_citations(fragments: list[str], cuts: list[int]) -> None:
    answer = "".join(fragments)
    whole = parse_whole(answer)
    assert parse_chunked(answer, cuts) == whole
    clean, spans = whole
    for span in spans:
        assert clean[span.start:span.end] == span.text
        assert span.text.strip()
        assert set(span.ids) <= KNOWN


plain = st.text(alphabet=st.characters(blacklist_characters="<>", blacklist_categories=("Cs",)), min_size=1,
                max_size=20)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(plain, st.sampled_from([(), ("doc_0",), ("doc_1", "doc_0"), ("ghost",)])),
                min_size=1, max_size=8),
       st.lists(st.integers(min_value=0), max_size=12), st.booleans())
def test_well_formed_markup_is_removed_and_every_span_found(segments: list[tuple[str, tuple[str, ...]]],
                                                           cuts: list[int], short_close: bool) -> None:
    answer, expected_text, expected_spans = "", "", []
    for text, ids in segments:
        if ids:
            close = "</co>" if short_close else f"</co: {','.join(ids)}>"
            answer += f"<co: {','.join(ids)}>{text}{close}"
            known = tuple(i for i in ids if i in KNOWN)
            if known and text.strip():
                expected_spans.append(Span(len(expected_text), len(expected_text) + len(text), text, known))
        else:
            answer += text
        expected_text += text
    assert parse_chunked(answer, cuts) == (expected_text, expected_spans)


def test_examples() -> None:
    clean, spans = parse_whole("The capital is <co: doc_0>Paris</co: doc_0>, see <co: ghost>there</co>.")
    assert clean == "The capital is Paris, see there."
    assert spans == [Span(15, 20, "Paris", ("doc_0",))]
    # Unclosed: the text survives, the citation is dropped.
    assert parse_whole("<co: doc_0>never closed") == ("never closed", [])
    # Not a tag: kept as text.
    assert parse_whole("a <b> and 1 < 2 > 0") == ("a <b> and 1 < 2 > 0", [])
    # Split in the middle of a tag.
    markup = CitationMarkup(KNOWN)
    assert markup.feed("Hi <c") == ("Hi ", [])
    assert markup.feed("o: doc_1>there</c") == ("there", [])
    assert markup.feed("o>!") == ("!", [Span(3, 8, "there", ("doc_1",))])


def test_an_answer_ending_inside_a_possible_tag_keeps_its_tail() -> None:
    for answer, expected in [("x < y and a <", "x < y and a <"), ("see <c", "see <c"), ("see </co", "see </co"),
                             ("see <co: doc_0", "see <co: doc_0"), ("<co: doc_0>cited <co", "cited <co")]:
        markup = CitationMarkup(KNOWN)
        clean, _ = markup.feed(answer)
        rest, spans = markup.finish()
        assert (clean + rest, spans) == (expected, [])


def test_plain_less_than_signs_are_not_held_back() -> None:
    markup = CitationMarkup(KNOWN)
    assert markup.feed("a < b") == ("a < b", [])
    assert markup.feed(" and <b> or <co ") == (" and <b> or <co ", [])
    assert markup.feed("1 <") == ("1 ", [])  # "<" may begin a tag
    assert markup.feed("= 2") == ("<= 2", [])


def test_a_tag_is_at_most_256_characters() -> None:
    tag = "<co: " + "d" * 250 + ">"  # 256 characters from `<` to `>`
    assert parse_whole(f"a{tag}b</co>") == ("ab", [])  # a tag (naming no known source): removed
    assert parse_whole(f"a{tag[:-1]}d>b") == (f"a{tag[:-1]}d>b", [])  # 257: text
    markup = CitationMarkup(KNOWN)
    assert markup.feed(tag[:-1]) == ("", [])  # 255 characters: it may still close
    markup = CitationMarkup(KNOWN)
    assert markup.feed(tag[:-1] + "d") == (tag[:-1] + "d", [])  # 256 without `>`: cannot be a tag any more


def test_nothing_stays_open_after_the_end() -> None:
    markup = CitationMarkup(KNOWN)
    assert markup.feed("<co: doc_0>unclosed") == ("unclosed", [])
    assert markup.finish() == ("", [])
    assert markup.feed(" more</co>") == (" more", [])  # the close finds no open citation
