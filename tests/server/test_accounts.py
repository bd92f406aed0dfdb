"""Accounts: self sign-up (off by default), password rules, tokens (hashed, expiring,
revocable), login throttling."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from evaccess.server.db.models import ApiToken, User
from evaccess.server.services import accounts
from evaccess.server.services.accounts import token_digest
from evaccess.server.settings import Settings
from tests.server.support import PASSWORD, build_world, client_for

OTHER_PASSWORD = "another long passphrase"


def test_self_signup_is_a_setting_off_by_default(monkeypatch):
    monkeypatch.delenv("EVACCESS_ALLOW_SIGNUP", raising=False)
    assert Settings().allow_signup is False
    monkeypatch.setenv("EVACCESS_ALLOW_SIGNUP", "true")
    assert Settings().allow_signup is True


async def test_signup_off_refuses_with_a_stable_code_and_creates_nothing(ctx):
    async with client_for(ctx) as client:
        refused = await client.post(
            "/api/users", json={"email": "new@example.com", "password": PASSWORD}
        )
    assert refused.status_code == 403
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["code"] == "signup_disabled"
    assert PASSWORD not in refused.text
    async with ctx.db.read() as session:
        assert (await session.scalars(select(User.email))).all() == []


def _headers(response):
    return sorted((k, v) for k, v in response.headers.items() if k not in ("date", "x-request-id"))


@pytest.mark.settings(allow_signup=True)
async def test_signup_answers_a_registered_address_exactly_like_a_new_one(ctx, canaries):
    canaries.add(OTHER_PASSWORD)
    await accounts.create_user(ctx, "taken@example.com", PASSWORD)
    async with client_for(ctx) as client:
        new = await client.post(
            "/api/users", json={"email": "New@Example.com", "password": OTHER_PASSWORD}
        )
        taken = await client.post(
            "/api/users", json={"email": "Taken@Example.com", "password": OTHER_PASSWORD}
        )
        assert new.status_code == taken.status_code == 202
        assert new.content == taken.content
        assert _headers(new) == _headers(taken)

        async def login(email: str, password: str) -> int:
            answer = await client.post(
                "/api/auth/login", json={"email": email, "password": password}
            )
            return int(answer.status_code)

        # the new address got its account; the registered one kept its password
        assert await login("new@example.com", OTHER_PASSWORD) == 200
        assert await login("taken@example.com", OTHER_PASSWORD) == 401
        assert await login("taken@example.com", PASSWORD) == 200


@pytest.mark.parametrize(
    ("password", "fragment"),
    [
        ("short", "at least 8"),
        ("password1", "too common"),
        ("qwertyuiop", "too common"),
        ("aaaaaaaaaa", "too simple"),
    ],
)
@pytest.mark.settings(allow_signup=True)
async def test_weak_passwords_rejected_without_echo(ctx, password, fragment):
    async with client_for(ctx) as client:
        response = await client.post(
            "/api/users", json={"email": "new@example.com", "password": password}
        )
    assert response.status_code == 422
    assert fragment in response.json()["detail"]
    assert password not in response.text


async def test_login_logout_and_token_storage(ctx):
    created = await accounts.create_user(ctx, "New@Example.com", PASSWORD)
    assert created.email == "new@example.com"
    async with client_for(ctx) as client:
        login = await client.post(
            "/api/auth/login", json={"email": "new@example.com", "password": PASSWORD}
        )
        token = login.json()["token"]
        headers = {"Authorization": f"Bearer {token}"}
        assert (await client.get("/api/me", headers=headers)).json()["email"] == "new@example.com"
        async with ctx.db.read() as session:
            stored = (await session.scalars(select(ApiToken.token_hash))).all()
        assert stored == [token_digest(token)]
        assert (await client.post("/api/auth/logout", headers=headers)).status_code == 204
        after = await client.get("/api/me", headers=headers)
        assert after.status_code == 401
        assert after.headers["www-authenticate"] == "Bearer"


async def test_tokens_expire(ctx, clock):
    await accounts.create_user(ctx, "new@example.com", PASSWORD)
    async with client_for(ctx) as client:
        token = (
            await client.post(
                "/api/auth/login", json={"email": "new@example.com", "password": PASSWORD}
            )
        ).json()["token"]
        clock.advance(ctx.token_ttl_s + 1)
        assert (
            await client.get("/api/me", headers={"Authorization": f"Bearer {token}"})
        ).status_code == 401


async def _login(client, password: str, email: str = "owner@example.com") -> int:
    response = await client.post("/api/auth/login", json={"email": email, "password": password})
    return int(response.status_code)


async def test_guesses_from_elsewhere_never_lock_the_owner_out(ctx, clock):
    await build_world(ctx)
    async with client_for(ctx, address="203.0.113.9") as attacker:
        for _ in range(4):  # an attacker keeps guessing, 12 wrong passwords a minute
            assert [await _login(attacker, "wrong-password") for _ in range(6)][-1] == 429
            clock.advance(20)
        locked = await attacker.post(
            "/api/auth/login", json={"email": "owner@example.com", "password": "wrong-password"}
        )
        assert locked.status_code == 429
        assert "try again in" in locked.json()["detail"]
    async with client_for(ctx, address="198.51.100.7") as owner:
        assert await _login(owner, PASSWORD) == 200


async def test_an_account_guessed_from_many_addresses_pauses_but_not_for_good(ctx, clock):
    await build_world(ctx)
    for n in range(50):  # 50 addresses, one guess each
        async with client_for(ctx, address=f"203.0.113.{n}") as attacker:
            assert await _login(attacker, "wrong-password") == 401
    async with client_for(ctx, address="198.51.100.7") as owner:
        paused = await owner.post(
            "/api/auth/login", json={"email": "owner@example.com", "password": PASSWORD}
        )
        assert paused.status_code == 429
        assert paused.json()["detail"].endswith("try again in 15 min")
        clock.advance(15 * 60 + 1)
        assert await _login(owner, PASSWORD) == 200


async def test_login_is_throttled_per_account(ctx, clock):
    await build_world(ctx)
    async with client_for(ctx) as client:
        codes = [
            (
                await client.post(
                    "/api/auth/login",
                    json={"email": "owner@example.com", "password": "wrong-password"},
                )
            ).status_code
            for _ in range(6)
        ]
        assert codes == [401, 401, 401, 401, 401, 429]
        locked = await client.post(
            "/api/auth/login", json={"email": "owner@example.com", "password": PASSWORD}
        )
        assert locked.status_code == 429
        assert "retry-after" in locked.headers
        clock.advance(61)
        ok = await client.post(
            "/api/auth/login", json={"email": "owner@example.com", "password": PASSWORD}
        )
        assert ok.status_code == 200


async def test_unknown_email_and_wrong_password_look_the_same(ctx):
    await build_world(ctx)
    async with client_for(ctx) as client:
        unknown = await client.post(
            "/api/auth/login", json={"email": "nobody@example.com", "password": PASSWORD}
        )
        wrong = await client.post(
            "/api/auth/login", json={"email": "owner@example.com", "password": "not-the-one"}
        )
    assert unknown.status_code == wrong.status_code == 401
    assert unknown.json()["detail"] == wrong.json()["detail"]


async def test_errors_are_problem_documents(ctx):
    async with client_for(ctx) as client:
        missing = await client.get("/api/nothing-here")
        bad_json = await client.post(
            "/api/auth/login", content=b"{not json", headers={"content-type": "application/json"}
        )
    assert missing.headers["content-type"] == "application/problem+json"
    assert missing.json()["code"] == "not_found"
    assert bad_json.status_code == 422
    assert bad_json.json()["code"] == "invalid_input"
    assert "{not json" not in bad_json.text


async def test_request_id_round_trips(ctx):
    async with client_for(ctx) as client:
        response = await client.get("/health", headers={"X-Request-ID": "req-42"})
        assert response.headers["x-request-id"] == "req-42"
        assert response.json()["status"] == "ok"
        forged = await client.get("/health", headers={"X-Request-ID": "bad id\nwith newline"})
        assert forged.headers["x-request-id"] != "bad id\nwith newline"


async def test_password_change_revokes_sessions(ctx):
    await accounts.create_user(ctx, "new@example.com", PASSWORD)
    async with client_for(ctx) as client:
        token = (
            await client.post(
                "/api/auth/login", json={"email": "new@example.com", "password": PASSWORD}
            )
        ).json()["token"]
        headers = {"Authorization": f"Bearer {token}"}
        wrong = await client.post(
            "/api/auth/password",
            json={"current_password": "nope-nope", "new_password": "a new long passphrase"},
            headers=headers,
        )
        assert wrong.status_code == 401
        changed = await client.post(
            "/api/auth/password",
            json={"current_password": PASSWORD, "new_password": "a new long passphrase"},
            headers=headers,
        )
        assert changed.status_code == 204
        assert (await client.get("/api/me", headers=headers)).status_code == 401
        again = await client.post(
            "/api/auth/login",
            json={"email": "new@example.com", "password": "a new long passphrase"},
        )
        assert again.status_code == 200


async def test_a_password_change_checks_the_current_one_and_ends_every_session(ctx, canaries):
    canaries.add(OTHER_PASSWORD)
    world = await build_world(ctx)
    actor = world.actor("member")
    email = world.users["member"].email
    issued = await accounts.login(ctx, email, PASSWORD, client="test")
    with pytest.raises(accounts.NotAuthenticated):
        await accounts.change_password(ctx, actor, "not the password", OTHER_PASSWORD)
    await accounts.authenticate(ctx, issued.token)  # a wrong current password changed nothing
    await accounts.change_password(ctx, actor, PASSWORD, OTHER_PASSWORD)
    with pytest.raises(accounts.NotAuthenticated):
        await accounts.authenticate(ctx, issued.token)
    with pytest.raises(accounts.NotAuthenticated):
        await accounts.login(ctx, email, PASSWORD, client="test")
    await accounts.login(ctx, email, OTHER_PASSWORD, client="test")


def test_a_code_to_paste_never_starts_with_a_dash():
    """``evaccess app accept -L6QQ…`` would be read as an option (seen in CI: one
    invitation code in 64 began with ``-``). A draw that would is drawn again."""
    from evaccess.server.services.accounts import typed_code

    class Draws:
        def __init__(self) -> None:
            self.draws = [b"\xf8" + bytes(31), b"\x00" * 32]  # "-A…", then "AA…"

        def token_bytes(self, n: int) -> bytes:
            return self.draws.pop(0)

        def randbelow(self, n: int) -> int:
            raise AssertionError("not used")

    rng = Draws()
    code = typed_code(rng)
    assert code == "A" * 43 and rng.draws == []
