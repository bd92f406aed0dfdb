"""What several routers share: the ``Cache-Control`` header of answers that carry a secret,
and the charger view as the API shows it."""

from __future__ import annotations

from evaccess.server.api import schemas as s
from evaccess.server.services.chargers import ChargerView

NO_STORE = {"Cache-Control": "no-store"}
"""Headers of an answer that carries a secret (a token, a password, a PIN): never cached."""


def charger_out(view: ChargerView) -> s.ChargerOut:
    return s.ChargerOut.model_validate(view)
