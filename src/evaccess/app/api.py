"""The app's client for the evaccess REST API (httpx). Problem documents become
``EvAccessError`` subclasses again, so the CLI prints one line per error."""

from __future__ import annotations

from types import TracebackType
from typing import Any, Self

import httpx

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

    async def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise errors.EvAccessError(
                f"cannot reach the server at {self._http.base_url}: {type(exc).__name__}",
                code="server_unreachable",
            ) from None
        if response.is_success:
            return response.json() if response.content else None
        raise _problem(response)

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

    async def set_keypad_pin(self, organisation_id: str, pin: str) -> dict[str, Any]:
        return dict(
            await self.request(
                "PUT", f"/api/organisations/{organisation_id}/keypad-pin", json={"pin": pin}
            )
        )

    async def generate_keypad_pin(self, organisation_id: str) -> dict[str, Any]:
        return dict(
            await self.request("POST", f"/api/organisations/{organisation_id}/keypad-pin/generate")
        )

    async def delete_keypad_pin(self, organisation_id: str) -> None:
        await self.request("DELETE", f"/api/organisations/{organisation_id}/keypad-pin")

    async def may_reveal_bluetooth_pin(self, charger_id: str) -> bool:
        return bool((await self.bluetooth_pin_state(charger_id)).get("can_reveal"))


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
