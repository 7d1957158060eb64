"""An OAuth 2 token endpoint's answer, as the token store keeps it (switchyard.tokens.TokenResponse)."""

from __future__ import annotations

from switchyard.tokens import TokenResponse


def test_token_response_of_intuit_keeps_both_lifetimes() -> None:
    body = {"token_type": "bearer", "access_token": "eyJ.a", "refresh_token": "AB11-new", "expires_in": 3600,
            "x_refresh_token_expires_in": 8726400}
    response = TokenResponse.from_oauth(body, previous_refresh_token="AB11-old")
    assert (response.access_token, response.refresh_token) == ("eyJ.a", "AB11-new")
    assert (response.expires_in, response.refresh_expires_in) == (3600.0, 8726400.0)


def test_token_response_lifetimes_given_as_text_are_numbers() -> None:
    body = {"access_token": "a", "refresh_token": "r", "expires_in": "1800", "x_refresh_token_expires_in": "86400"}
    response = TokenResponse.from_oauth(body, previous_refresh_token="r0")
    assert (response.expires_in, response.refresh_expires_in) == (1800.0, 86400.0)


def test_token_response_without_refresh_token_or_lifetimes_keeps_the_previous_token_and_an_hour() -> None:
    response = TokenResponse.from_oauth({"access_token": "a"}, previous_refresh_token="AB11-old")
    assert response.refresh_token == "AB11-old"
    assert (response.expires_in, response.refresh_expires_in) == (3600.0, None)
