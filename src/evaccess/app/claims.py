"""``evaccess app claim`` and ``evaccess app support``: claiming a charger through support
when nobody can transfer it to you, and (for the operator's support agents) reviewing
those claims.

A claim carries the serial number, the installation address, the installer's name and the
purchase agreement (PDF, PNG or JPEG). Two different agents approve it; the charger's owner,
if any, is told at once and may object (`claim object`) within the window, which stops it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from evaccess import console
from evaccess.app.api import ApiClient
from evaccess.app.output import done, when
from evaccess.app.session import load_session
from evaccess.domain.errors import InvalidInput

claim_app = typer.Typer(
    no_args_is_help=True,
    help="Claim a charger through support (moved in, and the previous owner cannot transfer "
    "it), follow your claims, or object to one against your charger.",
)
support_app = typer.Typer(
    no_args_is_help=True,
    help="Support agents: review ownership claims (two different agents approve each).",
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
ClaimId = Annotated[str, typer.Argument(help="The claim's id, as `claim list` shows it.")]
MAX_DOCUMENT_BYTES = 100 * 1024 * 1024
"""Above the server's largest limit: refused here before it is read into memory."""
DOCUMENT_TYPES = {
    ".pdf": "application/pdf",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
}

CLAIM_COLUMNS = ("claim", "charger", "you are", "state", "objection until", "filed")
QUEUE_COLUMNS = ("claim", "charger", "claimant", "state", "owned", "approved by", "filed")


def _client() -> ApiClient:
    session = load_session()
    return ApiClient(session.server, session.token)


def _claim_rows(items: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    return [
        (
            c["id"],
            c["serial"],
            c["role"],
            c["state"] + (f" ({c['reason']})" if c.get("reason") else ""),
            when(c["objection_until"]),
            when(c["filed_at"]),
        )
        for c in items
    ]


def _queue_rows(items: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    return [
        (
            c["id"],
            c["serial"],
            c["claimant_email"],
            c["state"],
            "yes" if c["charger_owned"] else "no",
            ", ".join(e for e in (c["first_approver_email"], c["second_approver_email"]) if e)
            or "-",
            when(c["filed_at"]),
        )
        for c in items
    ]


def _document(path: Path) -> tuple[str, bytes, str]:
    kind = DOCUMENT_TYPES.get(path.suffix.lower())
    if kind is None:
        raise InvalidInput(f"{path.name}: the purchase agreement is a .pdf, .png or .jpg file")
    try:
        if path.stat().st_size > MAX_DOCUMENT_BYTES:
            raise InvalidInput(f"{path.name} is larger than the server takes")
        return path.name, path.read_bytes(), kind
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}") from None


@claim_app.command("file")
@console.command
async def claim_file(
    serial: Annotated[str, typer.Argument(help="The serial number on the charger.")],
    address: Annotated[str, typer.Option(help="Where the charger is installed.")],
    installer: Annotated[str, typer.Option(help="Who installed it (company or person).")],
    document: Annotated[
        Path, typer.Option(help="The purchase agreement (or deed): a .pdf, .png or .jpg file.")
    ],
    json_output: JsonOption = False,
) -> None:
    """Ask support to make you the charger's owner, with proof."""
    upload = _document(document)
    async with _client() as api:
        claim = await api.file_claim(
            serial=serial, address=address, installer=installer, document=upload
        )
    if json_output:
        console.print_json(claim)
        return
    console.print_table(f"Claim of {serial}", CLAIM_COLUMNS, _claim_rows([claim]))
    if claim["objection_until"]:
        console.out.print(
            "the charger's owner is told and may object until "
            f"{when(claim['objection_until'])}; support decides meanwhile",
            soft_wrap=True,
            markup=False,
        )
    else:
        console.out.print("support reviews it: two agents must approve", markup=False)


@claim_app.command("list")
@console.command
async def claim_list(json_output: JsonOption = False) -> None:
    """Your claims, and claims against a charger you own."""
    async with _client() as api:
        items = await api.claims()
    if json_output:
        console.print_json(items)
        return
    console.print_table("Ownership claims", CLAIM_COLUMNS, _claim_rows(items))
    if any(
        c["role"] == "owner" and c["state"] in ("filed", "approved_once", "approved") for c in items
    ):
        console.out.print(
            "someone claims a charger of yours: if you did not sell or give it away, run "
            "`evaccess app claim object CLAIM`",
            soft_wrap=True,
            markup=False,
        )


@claim_app.command("withdraw")
@console.command
async def claim_withdraw(claim_id: ClaimId, json_output: JsonOption = False) -> None:
    """Take back a claim you filed."""
    async with _client() as api:
        claim = await api.claim_move(claim_id, "withdraw")
    done(json_output, claim, f"claim of {claim['serial']} withdrawn")


@claim_app.command("object")
@console.command
async def claim_object(claim_id: ClaimId, json_output: JsonOption = False) -> None:
    """Stop a claim against a charger you own (before the objection window closes)."""
    async with _client() as api:
        claim = await api.claim_move(claim_id, "object")
    done(json_output, claim, f"claim of {claim['serial']} stopped: you keep the charger")


@support_app.command("queue")
@console.command
async def support_queue(
    state: Annotated[
        str | None, typer.Option(help="Only claims in this state (default: the open ones).")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """The claims waiting for support, oldest first."""
    async with _client() as api:
        items = await api.support_queue(state)
    if json_output:
        console.print_json(items)
        return
    console.print_table("Claims for support", QUEUE_COLUMNS, _queue_rows(items))


@support_app.command("show")
@console.command
async def support_show(
    claim_id: ClaimId,
    document_out: Annotated[
        Path | None, typer.Option(help="Save the purchase agreement to this file (audited).")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """A claim's evidence; --document-out saves its purchase agreement."""
    async with _client() as api:
        claim = await api.support_claim(claim_id)
        data = await api.support_document(claim_id) if document_out else None
    if document_out is not None and data is not None:
        try:
            document_out.write_bytes(data)
        except OSError as exc:
            raise InvalidInput(f"cannot write {document_out}: {exc.strerror}") from None
    if json_output:
        console.print_json(claim)
        return
    fields = (
        ("charger", f"{claim['serial']} ({claim['vendor']} {claim['model']})"),
        ("claimant", claim["claimant_email"]),
        ("installation address", claim["installation_address"]),
        ("installer", claim["installer_name"]),
        ("document", f"{claim['document_type']}, {claim['document_size']} bytes, "
         f"SHA-256 {claim['document_sha256']}"),
        ("state", claim["state"]),
        ("owner at filing", "yes (may object until "
         f"{when(claim['objection_until'])})" if claim["charger_owned"] else "none"),
        ("approved by", ", ".join(
            e for e in (claim["first_approver_email"], claim["second_approver_email"]) if e
        ) or "-"),
    )  # fmt: skip
    console.print_table(f"Claim {claim['id']}", ("field", "value"), fields)
    if document_out is not None:
        console.out.print(f"purchase agreement saved to {document_out}", markup=False)


@support_app.command("approve")
@console.command
async def support_approve(claim_id: ClaimId, json_output: JsonOption = False) -> None:
    """Approve a claim (a second, different agent completes the approval)."""
    async with _client() as api:
        decided = await api.support_approve(claim_id)
    if json_output:
        console.print_json(decided)
        return
    claim = decided["claim"]
    if decided["handover"] is not None:
        message = f"{claim['serial']} handed over to {claim['claimant_email']}"
    elif claim["state"] == "approved":
        message = (
            f"approved twice: {claim['serial']} is handed over when the owner's objection "
            f"window closes ({when(claim['objection_until'])}) unless they object"
        )
    else:
        message = "approved once: a second, different support agent must approve it too"
    console.out.print(message, soft_wrap=True, markup=False)


@support_app.command("reject")
@console.command
async def support_reject(
    claim_id: ClaimId,
    reason: Annotated[str, typer.Option(help="Why (the claimant is shown it).")],
    json_output: JsonOption = False,
) -> None:
    """Turn a claim down, with a reason."""
    async with _client() as api:
        claim = await api.support_reject(claim_id, reason)
    done(json_output, claim, f"claim of {claim['serial']} rejected")
