"""The app's client for the evaccess REST API (httpx). Problem documents become
``EvAccessError`` subclasses again, so the CLI prints one line per error."""

from __future__ import annotations

from datetime import datetime
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote, urlsplit

import httpx

from evaccess import console
from evaccess.domain import errors

_BY_STATUS: dict[int, type[errors.EvAccessError]] = {
    400: errors.InvalidInput,
    401: errors.NotAuthenticated,
    403: errors.PermissionDenied,
    404: errors.NotFound,
    409: errors.Conflict,
    422: errors.InvalidInput,
    429: errors.Throttled,
    503: errors.AuditUnavailable,
}


EXAMPLE_SERVER = "http://127.0.0.1:8000"


def server_url(raw: str) -> str:
    """The ``--server`` value: the REST API's http:// or https:// base URL."""
    parts = urlsplit(raw.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise errors.InvalidInput(
            f"--server must be the server's http:// or https:// URL, e.g. {EXAMPLE_SERVER}"
            f" (got {console.shown_url(raw)!r})"
        )
    return raw.strip().rstrip("/")


_UNREACHABLE = {
    httpx.ConnectError: "nothing answers there",
    httpx.TimeoutException: "no answer in time",
}


class ApiClient:
    def __init__(
        self,
        server: str,
        token: str | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.AsyncClient(
            base_url=server.rstrip("/"), headers=headers, transport=transport, timeout=15.0
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._http.aclose()

    async def request(self, method: str, path: str, *, raw: bool = False, **kwargs: Any) -> Any:
        """The answer's JSON (``raw``: its bytes), or the problem as an ``EvAccessError``."""
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            why = next(
                (text for kind, text in _UNREACHABLE.items() if isinstance(exc, kind)),
                type(exc).__name__,
            )
            raise errors.EvAccessError(
                f"cannot reach the server at {self._http.base_url} ({why}); "
                "is `evaccess server run` running there?",
                code="server_unreachable",
            ) from None
        if response.is_success and raw:
            return response.content
        if response.is_success:
            return response.json() if response.content else None
        raise _problem(response)

    async def check_server(self) -> None:
        """The server answers, and is an evaccess server (before anyone types a password)."""
        try:
            health = await self.request("GET", "/health")
        except (errors.NotFound, ValueError):  # a 404, or a page that is not JSON
            health = None
        if not isinstance(health, dict) or "status" not in health:
            raise errors.EvAccessError(
                f"{self._http.base_url} answers, but is not an evaccess server",
                code="server_unreachable",
            )

    async def login(self, email: str, password: str) -> str:
        data = await self.request(
            "POST", "/api/auth/login", json={"email": email, "password": password}
        )
        return str(data["token"])

    async def logout(self) -> None:
        await self.request("POST", "/api/auth/logout")

    async def chargers(self) -> list[dict[str, Any]]:
        return list(await self.request("GET", "/api/chargers"))

    async def charger_by_serial(self, serial: str) -> dict[str, Any]:
        found = await self.request("GET", "/api/chargers", params={"serial": serial})
        if not found:
            raise errors.NotFound(f"no charger with serial {serial} that you can see")
        return dict(found[0])

    async def charger(self, charger_id: str) -> dict[str, Any]:
        """The detail view: connectors and the settings the charger reported."""
        return dict(await self.request("GET", f"/api/chargers/{charger_id}"))

    async def bluetooth_pin_state(self, charger_id: str) -> dict[str, Any]:
        return dict(await self.request("GET", f"/api/chargers/{charger_id}/bluetooth-pin"))

    async def reveal_bluetooth_pin(self, charger_id: str) -> str:
        data = await self.request("POST", f"/api/chargers/{charger_id}/bluetooth-pin/reveal")
        return str(data["pin"])

    async def me(self) -> dict[str, Any]:
        return dict(await self.request("GET", "/api/me"))

    @staticmethod
    def _keypad_pin_path(organisation_id: str | None) -> str:
        """An organisation's PIN space, or (``None``) your personal one as a charger owner."""
        if organisation_id is None:
            return "/api/me/keypad-pin"
        return f"/api/organisations/{organisation_id}/keypad-pin"

    async def set_keypad_pin(self, organisation_id: str | None, pin: str) -> dict[str, Any]:
        return dict(
            await self.request("PUT", self._keypad_pin_path(organisation_id), json={"pin": pin})
        )

    async def generate_keypad_pin(self, organisation_id: str | None) -> dict[str, Any]:
        return dict(
            await self.request("POST", f"{self._keypad_pin_path(organisation_id)}/generate")
        )

    async def delete_keypad_pin(self, organisation_id: str | None) -> None:
        await self.request("DELETE", self._keypad_pin_path(organisation_id))

    async def set_member_access(self, organisation_id: str, policy: str) -> dict[str, Any]:
        return dict(
            await self.request(
                "PUT",
                f"/api/organisations/{organisation_id}/member-access",
                json={"member_access": policy},
            )
        )

    async def may_reveal_bluetooth_pin(self, charger_id: str) -> bool:
        return bool((await self.bluetooth_pin_state(charger_id)).get("can_reveal"))

    async def change_password(self, current: str, new: str) -> None:
        await self.request(
            "POST",
            "/api/auth/password",
            json={"current_password": current, "new_password": new},
        )

    async def organisations(self) -> list[dict[str, Any]]:
        return list(await self.request("GET", "/api/organisations"))

    async def members(self, organisation_id: str) -> list[dict[str, Any]]:
        return list(await self.request("GET", f"/api/organisations/{organisation_id}/members"))

    # --- RFID cards (the number only in the body that adds it) --------------------------

    async def add_card(self, organisation_id: str, body: dict[str, Any]) -> dict[str, Any]:
        path = f"/api/organisations/{_segment(organisation_id)}/cards"
        return dict(await self.request("POST", path, json=body))

    async def cards(self, organisation_id: str, user_id: str | None = None) -> list[dict[str, Any]]:
        path = f"/api/organisations/{_segment(organisation_id)}/cards"
        params = {"user_id": user_id} if user_id else None
        return list(await self.request("GET", path, params=params))

    async def update_card(self, card_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        return dict(await self.request("PATCH", f"/api/cards/{_segment(card_id)}", json=changes))

    async def delete_card(self, card_id: str) -> None:
        await self.request("DELETE", f"/api/cards/{_segment(card_id)}")

    # --- access to a charger -------------------------------------------------------------

    async def invite(
        self, charger_id: str, email: str, kind: str, service_expires_at: datetime | None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"email": email, "kind": kind}
        if service_expires_at is not None:
            body["service_expires_at"] = service_expires_at.isoformat()
        return dict(
            await self.request("POST", f"/api/chargers/{charger_id}/invitations", json=body)
        )

    async def invitations(self, charger_id: str) -> list[dict[str, Any]]:
        return list(await self.request("GET", f"/api/chargers/{charger_id}/invitations"))

    async def revoke_invitation(self, charger_id: str, invitation_id: str) -> None:
        await self.request(
            "DELETE", f"/api/chargers/{charger_id}/invitations/{_segment(invitation_id)}"
        )

    async def accept_invitation(self, token: str) -> dict[str, Any]:
        return dict(await self.request("POST", "/api/invitations/accept", json={"token": token}))

    async def grants(self, charger_id: str) -> list[dict[str, Any]]:
        return list(await self.request("GET", f"/api/chargers/{charger_id}/grants"))

    async def revoke_grant(self, charger_id: str, grant_id: str) -> None:
        await self.request("DELETE", f"/api/chargers/{charger_id}/grants/{_segment(grant_id)}")

    async def assign(self, charger_id: str, user_id: str) -> dict[str, Any]:
        return dict(
            await self.request(
                "POST", f"/api/chargers/{charger_id}/assign", json={"user_id": user_id}
            )
        )

    async def extend_grant(
        self, charger_id: str, grant_id: str, expires_at: datetime
    ) -> dict[str, Any]:
        return dict(
            await self.request(
                "PATCH",
                f"/api/chargers/{charger_id}/grants/{_segment(grant_id)}",
                json={"expires_at": expires_at.isoformat()},
            )
        )

    # --- ownership ------------------------------------------------------------------------

    async def start_transfer(
        self, charger_id: str, email: str, *, keep_service_access: bool = False
    ) -> dict[str, Any]:
        body = {"email": email, "keep_service_access": keep_service_access}
        return dict(await self.request("POST", f"/api/chargers/{charger_id}/transfers", json=body))

    async def transfers(self) -> list[dict[str, Any]]:
        return list(await self.request("GET", "/api/transfers"))

    async def accept_transfer(self, transfer_id: str) -> dict[str, Any]:
        return dict(await self.request("POST", f"/api/transfers/{_segment(transfer_id)}/accept"))

    async def cancel_transfer(self, transfer_id: str) -> dict[str, Any]:
        return dict(await self.request("POST", f"/api/transfers/{_segment(transfer_id)}/cancel"))

    async def release(self, charger_id: str) -> dict[str, Any]:
        return dict(await self.request("POST", f"/api/chargers/{charger_id}/release"))

    # --- claims through support -----------------------------------------------------------

    async def file_claim(
        self, *, serial: str, address: str, installer: str, document: tuple[str, bytes, str]
    ) -> dict[str, Any]:
        form = {"serial": serial, "installation_address": address, "installer_name": installer}
        return dict(
            await self.request("POST", "/api/claims", data=form, files={"document": document})
        )

    async def claims(self) -> list[dict[str, Any]]:
        return list(await self.request("GET", "/api/claims"))

    async def claim_move(self, claim_id: str, move: str) -> dict[str, Any]:
        """``withdraw`` (yours) or ``object`` (against your charger)."""
        return dict(await self.request("POST", f"/api/claims/{_segment(claim_id)}/{move}"))

    async def support_queue(self, state: str | None = None) -> list[dict[str, Any]]:
        params = {"state": state} if state else {}
        return list(await self.request("GET", "/api/support/claims", params=params))

    async def support_claim(self, claim_id: str) -> dict[str, Any]:
        return dict(await self.request("GET", f"/api/support/claims/{_segment(claim_id)}"))

    async def support_document(self, claim_id: str) -> bytes:
        path = f"/api/support/claims/{_segment(claim_id)}/document"
        return bytes(await self.request("GET", path, raw=True))

    async def support_approve(self, claim_id: str) -> dict[str, Any]:
        return dict(await self.request("POST", f"/api/support/claims/{_segment(claim_id)}/approve"))

    async def support_reject(self, claim_id: str, reason: str) -> dict[str, Any]:
        return dict(
            await self.request(
                "POST",
                f"/api/support/claims/{_segment(claim_id)}/reject",
                json={"reason": reason},
            )
        )

    # --- a charger's history and its Bluetooth ------------------------------------------------

    async def reveal_history(self, charger_id: str) -> list[dict[str, Any]]:
        return list(await self.request("GET", f"/api/chargers/{charger_id}/bluetooth-pin/reveals"))

    async def security_events(self, charger_id: str) -> list[dict[str, Any]]:
        return list(await self.request("GET", f"/api/chargers/{charger_id}/security-events"))

    async def reenable_pairing(self, charger_id: str) -> dict[str, Any]:
        """The command as queued: ``charger_online`` says whether it goes out now."""
        path = f"/api/chargers/{charger_id}/bluetooth/reenable-pairing"
        return dict(await self.request("POST", path))

    async def revoke_phones(self, charger_id: str, phone_id: str | None) -> dict[str, Any]:
        """The command as queued: ``charger_online`` says whether it goes out now."""
        return dict(
            await self.request(
                "POST",
                f"/api/chargers/{charger_id}/bluetooth/revoke-phones",
                json={"phone_id": phone_id},
            )
        )

    async def transactions(self, charger_id: str | None = None) -> list[dict[str, Any]]:
        """A charger's charging sessions, or (without one) the caller's own."""
        path = "/api/me/transactions" if charger_id is None else (
            f"/api/chargers/{charger_id}/transactions"
        )  # fmt: skip
        return list(await self.request("GET", path))


def _segment(value: str) -> str:
    """An id the user typed, as one path segment (a ``/`` or ``..`` cannot change the route)."""
    return quote(value, safe="")


def _problem(response: httpx.Response) -> errors.EvAccessError:
    try:
        body = response.json()
        detail, code = str(body.get("detail") or body.get("title")), str(body.get("code"))
    except ValueError:
        detail, code = f"HTTP {response.status_code}", "http_error"
    cls = _BY_STATUS.get(response.status_code, errors.EvAccessError)
    if issubclass(cls, errors.Throttled):
        retry = float(response.headers.get("Retry-After", "60"))
        return cls(detail, retry_after=retry, code=code)
    return cls(detail, code=code)
