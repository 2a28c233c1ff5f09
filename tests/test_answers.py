"""Streamed answers are tidied exactly like whole ones: properties over generated token streams (hypothesis), and
the cases that motivated each rule."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from forgetlab.sessions.answers import StreamTidier, made_up_turn, settled, tidy

# Tokens a small model produces around the places tidying cares about: sentence ends, URLs, numbers, e-mail
# addresses, abbreviations, code spans and fences, made-up turns.
TOKENS = ["The", " answer", " is", " 42", ".", " ", "\n", "\n\n", "User", "user", ":", "name", "?", "!", "`", "```",
          "py", "3", ",", "14", "10:30", " https://cs.msu.example.edu/apply", " www.msu.edu", " e.g.", " Dr.",
          " me@msu.example.edu", "Assistant", "Q", "q", " Question", "System", "  ", "ok", "\t", " Dr", "Hi."]


def stream(tokens: list[str], stops: list[str], truncated: bool) -> tuple[str, StreamTidier, str]:
    """Feed the text token by token as the holder does; return (everything sent, the tidier, the text fed)."""
    tidier, text, sent = StreamTidier(stops), "", ""
    for token in tokens:
        text += token
        sent += tidier.feed(text)
        if tidier.stopped:
            break
    sent += tidier.finish(truncated)
    return sent, tidier, text


@settings(max_examples=600, deadline=None)
@example(tokens=["Hi.", " It", " is", " 3", ".", "14"], truncated=True, stops=[])  # "3." was no sentence end
@given(tokens=st.lists(st.sampled_from(TOKENS), max_size=40), truncated=st.booleans(),
       stops=st.lists(st.sampled_from(["is 4", ". T", "\n\n", "zz"]), max_size=2))
def test_what_is_streamed_adds_up_to_the_tidied_whole(tokens, truncated, stops):
    sent, tidier, text = stream(tokens, stops, truncated)
    # What was sent is exactly the tidied answer: never a piece that tidying the whole would have removed.
    assert sent == tidier.final == tidy(tidier.raw, truncated and not tidier.stopped)
    if not stops:
        # Without stop strings, the answer is what the old non-streamed path gave: tidy of the whole text, except
        # that a made-up turn now ends generation, so the answer before it is not cut as if the limit had.
        assert sent == tidy(text, truncated and not tidier.stopped)
        if tidier.stopped:
            assert sent == tidy(text, False)


@settings(max_examples=300, deadline=None)
@given(tokens=st.lists(st.sampled_from(TOKENS), max_size=30), more=st.lists(st.sampled_from(TOKENS), max_size=20),
       truncated=st.booleans())
def test_the_settled_part_survives_any_continuation(tokens, more, truncated):
    text = "".join(tokens)
    if made_up_turn(text) is not None:
        return
    whole = "".join(tokens + more)
    cut = made_up_turn(whole)
    final = tidy(whole[:cut] if cut is not None else whole, truncated and cut is None)
    assert final.startswith(settled(text))


def test_what_each_rule_holds_back():
    # Whole sentences go out at once; the unfinished tail waits and is dropped when the token limit cuts it.
    sent, tidier, _ = stream(["Move-in", " is", " August", " 21.", " Bring", " your", " ID"], [], truncated=True)
    assert sent == "Move-in is August 21." and tidier.raw.endswith("your ID")
    sent, _, _ = stream(["Move-in", " is", " August", " 21.", " Bring", " your", " ID"], [], truncated=False)
    assert sent == "Move-in is August 21. Bring your ID"
    # A URL's dots are not sentence ends, nor is a number's.
    t = StreamTidier()
    assert t.feed("Apply at https://cs.msu.example.edu/apply") == ""
    assert t.feed("Apply at https://cs.msu.example.edu/apply. It costs 2,350") == \
        "Apply at https://cs.msu.example.edu/apply."
    # A made-up turn stops generation; "\nUser" at the very end is not yet one ("\nUsername" is not).
    t = StreamTidier()
    assert t.feed("Room 3127.\nUser") == "Room 3127." and not t.stopped
    t.feed("Room 3127.\nUser: and the other one?")
    assert t.stopped and t.raw == "Room 3127." and t.finish(truncated=False) == ""
    assert made_up_turn("See the file.\nUsername: admin") is None
    # Inside an unclosed inline code span nothing is settled yet.
    assert settled("Run `pip install x. Then ") == ""
    assert settled("Run `pip install x`. Then ") == "Run `pip install x`."
