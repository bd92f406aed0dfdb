"""``evaccess app cards``: RFID cards (and other OCPP tokens) of members.

A card number is not a secret like a PIN (every reader prints it, it is on the card) but
it is a cloneable credential: it is taken as an argument (``-`` reads it from stdin, to keep
it out of the shell history and the process list), checked here before it is sent, and
never printed back unmasked: every output names a card by its id and its last characters.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, time
from typing import Annotated, Any

import typer

from evaccess import console
from evaccess.app.api import ApiClient
from evaccess.app.session import load_session
from evaccess.domain.errors import InvalidInput, NotFound
from evaccess.domain.tokens import TokenType, normalise

cards_app = typer.Typer(
    no_args_is_help=True,
    help="RFID cards and other charger tokens (ISO14443, ISO15693, eMAID, Central, MAC "
    "address): a charger's reader sends their number over the Open Charge Point Protocol.",
)

CARD_COLUMNS = ("card", "number", "type", "member", "status", "group", "label", "expires")
JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
OrganisationOption = Annotated[
    str | None, typer.Option(help="Organisation id or name (default: your only one).")
]
CardArgument = Annotated[
    str, typer.Argument(help="The card's id, or the last 4 characters shown by `cards list`.")
]


def _client() -> ApiClient:
    session = load_session()
    return ApiClient(session.server, session.token)


async def _organisation(api: ApiClient, organisation: str | None) -> tuple[str, dict[str, Any]]:
    me = await api.me()
    orgs = me["organisations"]
    if organisation is not None:
        for org in orgs:
            if organisation in (org["organisation_id"], org["name"]):
                return str(org["organisation_id"]), me
        raise NotFound("you are not a member of that organisation")
    if len(orgs) != 1:
        raise InvalidInput("pass --organisation: you belong to several organisations, or none")
    return str(orgs[0]["organisation_id"]), me


async def _member_id(api: ApiClient, org_id: str, me: dict[str, Any], email: str | None) -> str:
    if email is None or email.strip().casefold() == str(me["email"]).casefold():
        return str(me["id"])
    wanted = email.strip().casefold()
    for member in await api.members(org_id):
        if str(member["email"]).casefold() == wanted:
            return str(member["user_id"])
    raise NotFound("no member with that email in the organisation")


def _expiry(value: str | None) -> str | None:
    """``YYYY-MM-DD`` (the end of that day, UTC) or an ISO date-time."""
    if value is None:
        return None
    try:
        if len(value) == 10:
            day = datetime.strptime(value, "%Y-%m-%d").date()
            return datetime.combine(day, time.max, tzinfo=UTC).isoformat()
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput("--expires: a date YYYY-MM-DD or an ISO date-time") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).isoformat()


def _rows(cards: list[dict[str, Any]], emails: dict[str, str]) -> list[tuple[str, ...]]:
    return [
        (
            c["id"],
            c["masked"],
            c["type"],
            emails.get(c["user_id"], c["user_id"]),
            c["effective_status"],
            c["group_id_token"] or "-",
            c["label"] or "-",
            (c["expires_at"] or "-")[:16].replace("T", " "),
        )
        for c in cards
    ]


async def _find(api: ApiClient, org_id: str, me: dict[str, Any], card: str) -> dict[str, Any]:
    """A card by id, or by its last characters when that picks exactly one."""
    mine_only = not any(
        o["organisation_id"] == org_id and o["role"] != "user" for o in me["organisations"]
    )
    listed = await api.cards(org_id, str(me["id"]) if mine_only else None)
    tail = card.strip().lstrip("…").upper()
    found = [c for c in listed if c["id"] == card] or [
        c for c in listed if len(tail) >= 4 and c["masked"].lstrip("…") == tail[-4:]
    ]
    if len(found) != 1:
        raise NotFound("no such card" if not found else "several cards end so: give the card's id")
    return found[0]


@cards_app.command("add")
@console.command
async def add(
    number: Annotated[
        str, typer.Argument(help="The card number as the reader shows it; - reads it from stdin.")
    ],
    token_type: Annotated[
        TokenType,
        typer.Option("--type", case_sensitive=False, help="ISO14443 (default), ISO15693, eMAID..."),
    ] = TokenType.ISO14443,
    member: Annotated[
        str | None, typer.Option(help="The member's email (default: yourself; admins).")
    ] = None,
    organisation: OrganisationOption = None,
    group: Annotated[str | None, typer.Option(help="The groupIdToken (parentIdTag).")] = None,
    label: Annotated[str | None, typer.Option(help="A name for people, e.g. 'van 3'.")] = None,
    expires: Annotated[
        str | None, typer.Option(help="Last day it works, YYYY-MM-DD (UTC).")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Register a card of a member (yours by default); shown masked from then on."""
    raw = sys.stdin.readline().strip() if number == "-" else number
    normalised = normalise(token_type, raw)  # checked before it leaves this machine
    async with _client() as api:
        org_id, me = await _organisation(api, organisation)
        body = {
            "user_id": await _member_id(api, org_id, me, member),
            "type": token_type.value,
            "number": normalised,
            "group_id_token": group,
            "label": label,
            "expires_at": _expiry(expires),
        }
        card = await api.add_card(org_id, body)
    if json_output:
        console.print_json(card)
        return
    console.out.print(
        f"card {card['masked']} added ({card['type']}, id {card['id']})", markup=False
    )


@cards_app.command("list")
@console.command
async def list_cards(
    organisation: OrganisationOption = None,
    mine: Annotated[bool, typer.Option("--mine", help="Only your own cards.")] = False,
    json_output: JsonOption = False,
) -> None:
    """The organisation's cards (admins), or your own."""
    async with _client() as api:
        org_id, me = await _organisation(api, organisation)
        role = next(o["role"] for o in me["organisations"] if o["organisation_id"] == org_id)
        own = mine or role == "user"
        cards = await api.cards(org_id, str(me["id"]) if own else None)
        emails = {str(me["id"]): str(me["email"])}
        if not own:
            emails |= {str(m["user_id"]): str(m["email"]) for m in await api.members(org_id)}
    if json_output:
        console.print_json(cards)
        return
    console.print_table("Cards", CARD_COLUMNS, _rows(cards, emails))


@cards_app.command("block")
@console.command
async def block(
    card: CardArgument,
    unblock: Annotated[bool, typer.Option("--unblock", help="Accept it again.")] = False,
    organisation: OrganisationOption = None,
    json_output: JsonOption = False,
) -> None:
    """Block a card (chargers answer Blocked, and are told to clear their cache)."""
    status = "Accepted" if unblock else "Blocked"
    async with _client() as api:
        org_id, me = await _organisation(api, organisation)
        found = await _find(api, org_id, me, card)
        updated = await api.update_card(found["id"], {"status": status})
    if json_output:
        console.print_json(updated)
        return
    verb = "accepted again" if unblock else "blocked"
    console.out.print(f"card {updated['masked']} {verb}", markup=False)


@cards_app.command("delete")
@console.command
async def delete(card: CardArgument, organisation: OrganisationOption = None) -> None:
    """Remove a card (chargers are told to clear their cache)."""
    async with _client() as api:
        org_id, me = await _organisation(api, organisation)
        found = await _find(api, org_id, me, card)
        await api.delete_card(found["id"])
    console.out.print(f"card {found['masked']} deleted", markup=False)
