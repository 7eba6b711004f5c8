"""The dbProcessUrl's form parser is the standard library's, only faster."""

from urllib.parse import parse_qsl, quote_plus

from hypothesis import given, settings
from hypothesis import strategies as st

from app.notifications.router import parse_form

PIECES = st.text(alphabet=st.sampled_from("ab=&+%20%zZ%C3%A9%00 é;"), max_size=40)


@settings(max_examples=500, derandomize=True, database=None)
@given(PIECES)
def test_same_as_parse_qsl_on_any_text(text: str) -> None:
    assert parse_form(text) == dict(parse_qsl(text, keep_blank_values=True))


@settings(max_examples=200, derandomize=True, database=None)
@given(st.dictionaries(st.text(max_size=12), st.text(max_size=30), max_size=8))
def test_round_trips_an_encoded_form(fields: dict[str, str]) -> None:
    text = "&".join(f"{quote_plus(k)}={quote_plus(v)}" for k, v in fields.items())
    assert parse_form(text) == dict(parse_qsl(text, keep_blank_values=True))
