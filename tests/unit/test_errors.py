"""The SDK's reading of error answers, including ones that do not come from Mitosis."""

from __future__ import annotations

from mitosis_sdk import errors


def test_a_mitosis_error_body_becomes_its_typed_exception():
    """The wire shape maps to the class of its status, with code and message kept."""
    exc = errors.error_from_body(404, b'{"error":"not_found","message":"task x does not exist"}')
    assert isinstance(exc, errors.NotFound)
    assert exc.code == errors.ErrorCode.NOT_FOUND
    assert exc.message == "task x does not exist"


def test_an_html_page_is_summarised_by_its_title():
    """A wrong URL (another web server) reads as one line naming the page, not raw HTML."""
    page = b"<!DOCTYPE HTML><html><head><title>Error response</title></head><body>x</body></html>"
    exc = errors.error_from_body(501, page)
    assert isinstance(exc, errors.ServerError)
    assert "\n" not in exc.message
    assert "HTTP 501 (Error response)" in exc.message
    assert "is the URL right?" in exc.message


def test_a_plain_text_answer_is_kept_short_and_on_one_line():
    """A proxy's text is folded to one line of at most 120 characters of its own."""
    exc = errors.error_from_body(502, b"bad gateway\n" + b"x" * 500)
    assert exc.message.startswith("the server answered HTTP 502 (bad gateway xxx")
    assert len(exc.message) <= 120 + len(
        "the server answered HTTP 502 (), not as a Mitosis coordinator would: is the URL right?"
    )
