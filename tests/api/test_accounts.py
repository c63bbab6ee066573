import re
from urllib.parse import parse_qs, urlsplit

import pytest

from chat.models import AuthToken, User
from tests.factories import PASSWORD, token_for
from tests.graphql_client import GraphQLClient

REGISTER = """
mutation Register($email: String!, $password: String!, $displayName: String!) {
  register(email: $email, password: $password, displayName: $displayName) {
    __typename
    ... on AuthPayload { token user { id displayName email } }
    ... on OperationInfo { messages { kind field code message } }
  }
}
"""

LOGIN = """
mutation Login($email: String!, $password: String!) {
  login(email: $email, password: $password) {
    __typename
    ... on AuthPayload { token user { id email } }
    ... on OperationInfo { messages { kind field code message } }
  }
}
"""

ME = "query { me { id displayName email } }"

LOGOUT = """
mutation { logout { __typename ... on Done { message } } }
"""

CHANGE_PASSWORD = """
mutation Change($current: String!, $new: String!) {
  changePassword(currentPassword: $current, newPassword: $new) {
    __typename
    ... on User { id }
    ... on OperationInfo { messages { kind field code } }
  }
}
"""

REQUEST_RESET = """
mutation Request($email: String!) {
  requestPasswordReset(email: $email) { __typename ... on Done { message } }
}
"""

RESET = """
mutation Reset($uid: String!, $token: String!, $password: String!) {
  resetPassword(uid: $uid, token: $token, newPassword: $password) {
    __typename
    ... on Done { message }
    ... on OperationInfo { messages { kind field code } }
  }
}
"""

UPDATE_PROFILE = """
mutation Update($name: String) {
  updateProfile(displayName: $name) {
    __typename
    ... on User { id displayName }
    ... on OperationInfo { messages { kind field code } }
  }
}
"""

NEW_PASSWORD = "a much better passphrase"


def register(gql, email="Grace@Example.com", password=PASSWORD, name="Grace Hopper"):
    return gql.execute(REGISTER, {"email": email, "password": password, "displayName": name})


def messages(response, field):
    return response.data[field]["messages"]


# --- register ------------------------------------------------------------------------


@pytest.mark.django_db
def test_register_returns_a_token_that_signs_in(gql):
    response = register(gql)

    payload = response.data["register"]
    user = User.objects.get()
    assert payload == {
        "__typename": "AuthPayload",
        "token": payload["token"],
        "user": {"id": str(user.id), "displayName": "Grace Hopper", "email": "grace@example.com"},
    }
    assert payload["token"].startswith("ct_")
    me = gql.execute(ME, token=payload["token"])
    assert me.data == {
        "me": {"id": str(user.id), "displayName": "Grace Hopper", "email": "grace@example.com"}
    }


@pytest.mark.django_db
def test_register_stores_only_a_hash_of_the_token(gql):
    token = register(gql).data["register"]["token"]

    stored = AuthToken.objects.get()
    assert token not in {stored.key_hash, stored.prefix}
    assert stored.prefix == token[:12]


@pytest.mark.django_db
def test_register_rejects_an_email_in_use_whatever_its_case(gql, user):
    response = register(gql, email="  ADA@example.COM ")

    assert messages(response, "register") == [
        {
            "kind": "VALIDATION",
            "field": "email",
            "code": "email_taken",
            "message": "An account with this email already exists.",
        }
    ]
    assert User.objects.count() == 1
    assert AuthToken.objects.count() == 0


@pytest.mark.parametrize("email", ["not-an-email", "", "a@b", "ada@@example.com"])
@pytest.mark.django_db
def test_register_rejects_an_invalid_email(gql, email):
    response = register(gql, email=email)

    assert messages(response, "register") == [
        {
            "kind": "VALIDATION",
            "field": "email",
            "code": "invalid_email",
            "message": "Enter a valid email address.",
        }
    ]
    assert User.objects.count() == 0


@pytest.mark.parametrize(
    ("password", "codes"),
    [
        ("short", ["password_too_short"]),
        ("password", ["password_too_common"]),
        ("12345678901", ["password_too_common", "password_entirely_numeric"]),
        ("grace@example.com", ["password_too_similar"]),
    ],
)
@pytest.mark.django_db
def test_register_applies_the_password_rules(gql, password, codes):
    response = register(gql, password=password)

    found = messages(response, "register")
    assert [(m["field"], m["code"]) for m in found] == [("password", code) for code in codes]
    assert User.objects.count() == 0


@pytest.mark.parametrize("name", ["", "   ", "x" * 65])
@pytest.mark.django_db
def test_register_rejects_a_bad_display_name(gql, name):
    response = register(gql, name=name)

    assert [(m["field"], m["code"]) for m in messages(response, "register")] == [
        ("displayName", "invalid_display_name")
    ]
    assert User.objects.count() == 0


@pytest.mark.django_db
def test_register_is_limited_per_client_address(gql, settings):
    settings.REGISTER_RATE_LIMIT_PER_ADDRESS = 2
    register(gql, email="one@example.com")
    register(gql, email="two@example.com")

    response = register(gql, email="three@example.com")

    assert response.json["data"] is None
    assert response.error_codes == ["RATE_LIMITED"]
    assert 0 < response.errors[0]["extensions"]["retryAfter"] <= settings.REGISTER_RATE_WINDOW
    assert User.objects.count() == 2


# --- login ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_login_with_any_case_of_the_email(gql, user):
    response = gql.execute(LOGIN, {"email": "Ada@Example.com", "password": PASSWORD})

    payload = response.data["login"]
    assert payload["user"] == {"id": str(user.id), "email": "ada@example.com"}
    assert gql.execute(ME, token=payload["token"]).data["me"]["id"] == str(user.id)
    user.refresh_from_db()
    assert user.last_login is not None


@pytest.mark.parametrize(
    ("email", "password"),
    [("ada@example.com", "wrong password!"), ("nobody@example.com", PASSWORD)],
)
@pytest.mark.django_db
def test_login_fails_alike_for_a_wrong_password_and_an_unknown_email(gql, user, email, password):
    response = gql.execute(LOGIN, {"email": email, "password": password})

    assert messages(response, "login") == [
        {
            "kind": "VALIDATION",
            "field": None,
            "code": "invalid_credentials",
            "message": "The email or password is incorrect.",
        }
    ]
    assert AuthToken.objects.count() == 0


@pytest.mark.django_db
def test_login_refuses_an_inactive_user(gql, user):
    User.objects.filter(pk=user.pk).update(is_active=False)

    response = gql.execute(LOGIN, {"email": user.email, "password": PASSWORD})

    assert [m["code"] for m in messages(response, "login")] == ["invalid_credentials"]


@pytest.mark.django_db
def test_login_is_throttled_per_email_and_address_even_with_the_right_password(
    gql, user, settings
):
    settings.LOGIN_RATE_LIMIT = 3
    for _ in range(3):
        gql.execute(LOGIN, {"email": user.email, "password": "wrong password!"})

    response = gql.execute(LOGIN, {"email": user.email, "password": PASSWORD})

    assert response.json["data"] is None
    [error] = response.errors
    assert error["message"] == "Too many attempts. Try again later."
    assert error["extensions"]["code"] == "RATE_LIMITED"
    assert 0 < error["extensions"]["retryAfter"] <= settings.LOGIN_RATE_WINDOW
    assert AuthToken.objects.count() == 0


@pytest.mark.django_db
def test_login_is_throttled_per_client_address_across_emails(gql, user, settings):
    settings.LOGIN_RATE_LIMIT_PER_ADDRESS = 3
    for n in range(3):
        gql.execute(LOGIN, {"email": f"guess{n}@example.com", "password": "guess"})

    blocked = gql.execute(LOGIN, {"email": user.email, "password": PASSWORD})
    gql.client_address = "198.51.100.9"
    elsewhere = gql.execute(LOGIN, {"email": user.email, "password": PASSWORD})

    assert blocked.error_codes == ["RATE_LIMITED"]
    assert elsewhere.data["login"]["__typename"] == "AuthPayload"


@pytest.mark.django_db
def test_a_successful_login_clears_the_failures_for_that_email(gql, user, settings):
    settings.LOGIN_RATE_LIMIT = 3
    for _ in range(2):
        gql.execute(LOGIN, {"email": user.email, "password": "wrong password!"})
    gql.execute(LOGIN, {"email": user.email, "password": PASSWORD})

    for _ in range(2):
        gql.execute(LOGIN, {"email": user.email, "password": "wrong password!"})
    response = gql.execute(LOGIN, {"email": user.email, "password": PASSWORD})

    assert response.data["login"]["__typename"] == "AuthPayload"


def _login_from(app, address: str, email: str, password: str):
    client = GraphQLClient(app, client_address=address)
    return client.execute(LOGIN, {"email": email, "password": password})


@pytest.mark.django_db
def test_a_strangers_failures_do_not_lock_the_owner_out(asgi_app, user, settings):
    settings.LOGIN_RATE_LIMIT = 5
    owner, stranger = "198.51.100.1", "203.0.113.66"
    assert _login_from(asgi_app, owner, user.email, PASSWORD).data["login"]["token"]
    for _ in range(5):
        _login_from(asgi_app, stranger, user.email, "wrong password!")

    strangers_next = _login_from(asgi_app, stranger, user.email, PASSWORD)
    owners = _login_from(asgi_app, owner, user.email, PASSWORD)

    assert strangers_next.error_codes == ["RATE_LIMITED"]
    assert owners.data["login"]["__typename"] == "AuthPayload"
    assert AuthToken.objects.filter(user=user).count() == 2


@pytest.mark.django_db
def test_failures_from_many_addresses_slow_an_email_down_without_locking_it(
    asgi_app, user, settings
):
    settings.LOGIN_EMAIL_DELAY_AFTER = 3
    owner = "198.51.100.1"
    assert _login_from(asgi_app, owner, user.email, PASSWORD).data["login"]["token"]
    for n in range(3):
        _login_from(asgi_app, f"203.0.113.{n}", user.email, "wrong password!")

    # The fourth failure is allowed, then a new address must wait 1 s, then 2 s...
    fourth = _login_from(asgi_app, "203.0.113.50", user.email, "wrong password!")
    fifth = _login_from(asgi_app, "203.0.113.51", user.email, PASSWORD)
    owners = _login_from(asgi_app, owner, user.email, PASSWORD)

    assert fourth.data["login"]["__typename"] == "OperationInfo"
    assert fifth.error_codes == ["RATE_LIMITED"]
    assert fifth.errors[0]["extensions"]["retryAfter"] == 1
    assert owners.data["login"]["__typename"] == "AuthPayload"


# --- tokens and me -------------------------------------------------------------------


@pytest.mark.django_db
def test_me_without_credentials_is_unauthenticated(gql):
    response = gql.execute(ME)

    assert response.json == {
        "data": None,
        "errors": [
            {
                "message": "You must be signed in.",
                "locations": [{"line": 1, "column": 9}],
                "path": ["me"],
                "extensions": {"code": "UNAUTHENTICATED"},
            }
        ],
    }


@pytest.mark.parametrize(
    "header",
    [
        *("Bearer", "Bearer ", "Token ct_abc", "Bearer ct_unknown", "Bearer a b", "ct_abc"),
        *("Basic x", "Bearer ct_'OR'1'='1'--", "Bearer ct_" + "a" * 10_000),
    ],
)
@pytest.mark.django_db
def test_me_with_a_malformed_or_unknown_token_is_unauthenticated(gql, user, header):
    response = gql.execute(ME, headers={"Authorization": header})

    assert response.status == 200
    assert response.error_codes == ["UNAUTHENTICATED"]
    assert response.errors[0]["message"] == (
        "The access token is invalid, expired or revoked. Sign in again."
    )


@pytest.mark.django_db
def test_an_expired_token_is_refused(gql, user, token):
    AuthToken.objects.update(expires_at="2000-01-01T00:00:00Z")

    assert gql.execute(ME, token=token).error_codes == ["UNAUTHENTICATED"]


@pytest.mark.django_db
def test_a_stale_token_does_not_block_login(gql, user):
    response = gql.execute(
        LOGIN, {"email": user.email, "password": PASSWORD}, token="ct_revoked_long_ago"
    )

    assert response.data["login"]["__typename"] == "AuthPayload"


@pytest.mark.django_db
def test_using_a_token_records_when_it_was_last_used(gql, user, token):
    gql.execute(ME, token=token)

    assert AuthToken.objects.get().last_used_at is not None


# --- logout --------------------------------------------------------------------------


@pytest.mark.django_db
def test_logout_revokes_only_the_token_in_use(gql, user):
    phone, laptop = token_for(user), token_for(user)

    response = gql.execute(LOGOUT, token=phone)

    assert response.data == {"logout": {"__typename": "Done", "message": "Signed out."}}
    assert gql.execute(ME, token=phone).error_codes == ["UNAUTHENTICATED"]
    assert gql.execute(ME, token=laptop).data["me"]["id"] == str(user.id)


@pytest.mark.django_db
def test_logout_when_signed_out_is_unauthenticated(gql):
    assert gql.execute(LOGOUT).error_codes == ["UNAUTHENTICATED"]


# --- change password -----------------------------------------------------------------


@pytest.mark.django_db
def test_change_password_signs_out_every_other_token(gql, user):
    current, other = token_for(user), token_for(user)

    response = gql.execute(
        CHANGE_PASSWORD, {"current": PASSWORD, "new": NEW_PASSWORD}, token=current
    )

    assert response.data == {"changePassword": {"__typename": "User", "id": str(user.id)}}
    assert gql.execute(ME, token=current).data["me"]["id"] == str(user.id)
    assert gql.execute(ME, token=other).error_codes == ["UNAUTHENTICATED"]
    old = gql.execute(LOGIN, {"email": user.email, "password": PASSWORD})
    new = gql.execute(LOGIN, {"email": user.email, "password": NEW_PASSWORD})
    assert [m["code"] for m in messages(old, "login")] == ["invalid_credentials"]
    assert new.data["login"]["__typename"] == "AuthPayload"


@pytest.mark.parametrize(
    ("current", "new", "expected"),
    [
        ("wrong password!", NEW_PASSWORD, [("currentPassword", "wrong_password")]),
        (PASSWORD, "short", [("newPassword", "password_too_short")]),
    ],
)
@pytest.mark.django_db
def test_change_password_failures_change_nothing(gql, user, current, new, expected):
    current_token, other = token_for(user), token_for(user)

    response = gql.execute(CHANGE_PASSWORD, {"current": current, "new": new}, token=current_token)

    assert [(m["field"], m["code"]) for m in messages(response, "changePassword")] == expected
    user.refresh_from_db()
    assert user.check_password(PASSWORD)
    assert gql.execute(ME, token=other).data["me"]["id"] == str(user.id)


# --- password reset ------------------------------------------------------------------


def reset_link_params(mail) -> dict[str, str]:
    [link] = re.findall(r"https?://\S+", mail.body)
    query = parse_qs(urlsplit(link).query)
    return {"uid": query["uid"][0], "token": query["token"][0]}


@pytest.mark.django_db
def test_password_reset_end_to_end_through_the_email(gql, user, mailoutbox, settings):
    settings.PASSWORD_RESET_URL = "https://chat.example/reset"
    old_token = token_for(user)

    requested = gql.execute(REQUEST_RESET, {"email": "ADA@example.com"})
    [mail] = mailoutbox
    params = reset_link_params(mail)
    reset = gql.execute(RESET, {**params, "password": NEW_PASSWORD})
    reused = gql.execute(RESET, {**params, "password": "yet another passphrase"})

    assert requested.data == {
        "requestPasswordReset": {
            "__typename": "Done",
            "message": "If an account uses this address, we sent it a reset link.",
        }
    }
    assert mail.to == ["ada@example.com"]
    assert mail.subject == "Reset your password"
    assert "https://chat.example/reset?uid=" in mail.body
    assert reset.data["resetPassword"]["__typename"] == "Done"
    assert [(m["field"], m["code"]) for m in messages(reused, "resetPassword")] == [
        ("token", "invalid_reset_link")
    ]
    assert gql.execute(ME, token=old_token).error_codes == ["UNAUTHENTICATED"]
    login = gql.execute(LOGIN, {"email": user.email, "password": NEW_PASSWORD})
    assert login.data["login"]["__typename"] == "AuthPayload"


@pytest.mark.django_db
def test_password_reset_for_an_unknown_email_answers_alike_and_sends_nothing(
    gql, user, mailoutbox
):
    known = gql.execute(REQUEST_RESET, {"email": user.email})
    unknown = gql.execute(REQUEST_RESET, {"email": "nobody@example.com"})

    assert unknown.json == known.json
    assert [mail.to for mail in mailoutbox] == [[user.email]]


@pytest.mark.django_db
def test_password_reset_emails_are_limited_per_address_silently(gql, user, mailoutbox, settings):
    settings.PASSWORD_RESET_RATE_LIMIT = 2
    responses = [gql.execute(REQUEST_RESET, {"email": user.email}) for _ in range(4)]

    assert {r.data["requestPasswordReset"]["__typename"] for r in responses} == {"Done"}
    assert len(mailoutbox) == 2


@pytest.mark.django_db
def test_an_expired_reset_link_is_refused(gql, user, mailoutbox, settings, monkeypatch):
    gql.execute(REQUEST_RESET, {"email": user.email})
    params = reset_link_params(mailoutbox[0])
    from django.contrib.auth.tokens import default_token_generator

    later = default_token_generator._now().timestamp() + settings.PASSWORD_RESET_TIMEOUT + 5
    from datetime import datetime

    monkeypatch.setattr(default_token_generator, "_now", lambda: datetime.fromtimestamp(later))

    response = gql.execute(RESET, {**params, "password": NEW_PASSWORD})

    assert [m["code"] for m in messages(response, "resetPassword")] == ["invalid_reset_link"]
    user.refresh_from_db()
    assert user.check_password(PASSWORD)


@pytest.mark.parametrize(
    ("uid", "token"), [("garbage", "1-2"), ("", ""), ("MTIz", "abc-def"), ("!!!", "x")]
)
@pytest.mark.django_db
def test_a_forged_reset_link_is_refused(gql, user, uid, token):
    response = gql.execute(RESET, {"uid": uid, "token": token, "password": NEW_PASSWORD})

    assert [m["code"] for m in messages(response, "resetPassword")] == ["invalid_reset_link"]


@pytest.mark.django_db
def test_reset_with_a_weak_password_keeps_the_link_usable(gql, user, mailoutbox):
    gql.execute(REQUEST_RESET, {"email": user.email})
    params = reset_link_params(mailoutbox[0])

    weak = gql.execute(RESET, {**params, "password": "short"})
    strong = gql.execute(RESET, {**params, "password": NEW_PASSWORD})

    assert [(m["field"], m["code"]) for m in messages(weak, "resetPassword")] == [
        ("newPassword", "password_too_short")
    ]
    assert strong.data["resetPassword"]["__typename"] == "Done"


# --- profile -------------------------------------------------------------------------


@pytest.mark.django_db
def test_update_profile_normalises_spaces(gql, user, token):
    response = gql.execute(UPDATE_PROFILE, {"name": "  Ada   King  "}, token=token)

    assert response.data == {
        "updateProfile": {"__typename": "User", "id": str(user.id), "displayName": "Ada King"}
    }
    user.refresh_from_db()
    assert user.display_name == "Ada King"


@pytest.mark.parametrize(
    ("name", "code"), [("", "invalid_display_name"), (None, "nothing_to_update")]
)
@pytest.mark.django_db
def test_update_profile_rejects_bad_input(gql, user, token, name, code):
    response = gql.execute(UPDATE_PROFILE, {"name": name}, token=token)

    assert [m["code"] for m in messages(response, "updateProfile")] == [code]
    user.refresh_from_db()
    assert user.display_name == "Ada Lovelace"


@pytest.mark.django_db
def test_update_profile_when_signed_out_is_unauthenticated(gql):
    assert gql.execute(UPDATE_PROFILE, {"name": "X"}).error_codes == ["UNAUTHENTICATED"]


@pytest.mark.django_db
def test_other_users_email_is_private(gql, user, make_user):
    other = make_user()
    from tests.factories import token_for as issue

    query = "query { me { email } }"
    assert gql.execute(query, token=issue(other)).data == {"me": {"email": other.email}}
