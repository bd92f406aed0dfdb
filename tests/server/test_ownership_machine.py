"""A Hypothesis state machine over one keypad charger with a changeable Bluetooth PIN:
invite, grant service, reveal, start a transfer, accept (by the right and the wrong
account), cancel, release, file a claim through support, approve it (by the same agent
twice, or two), object to it, and let time pass (transfers and service access expire,
approved claims are handed over once the objection window closes).

At every step: the charger has exactly one owner or none, as the model says; exactly the
people of the current ownership can see, control, reveal and use the keypad; nobody of a
previous ownership can pair with a PIN they were shown (it was rotated); each handover told
the charger to forget every phone."""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import func, select

from evaccess.domain.access import SERVICE_ACCESS_TTL, ChargerAction, GrantKind, Role, StaffRole
from evaccess.domain.claim import CLAIMS_PER_CHARGER, CLAIMS_PERIOD, OBJECTION_WINDOW
from evaccess.domain.clock import ManualClock
from evaccess.domain.errors import EvAccessError, NotFound
from evaccess.server.context import Context
from evaccess.server.db.models import BluetoothPin, OutboxCommand, Ownership
from evaccess.server.services import (
    accounts,
    bluetooth_pins,
    claims,
    invitations,
    keypad_pins,
    organisations,
    ownership,
    registration,
    transfers,
)
from evaccess.server.services.bluetooth_pins import _slots
from evaccess.server.services.relations import Actor, charger_for
from tests.conftest import ALL_CANARIES, SeededRandom
from tests.server.support import PASSWORD, as_system, confirm_pin_push, make_context

PEOPLE = ("ann", "bob", "cat", "dan")
AGENTS = ("sue", "tom")
CODES = {"ann": "4821", "bob": "5932", "cat": "6043", "dan": "7154"}
SERIAL = "WB-900009"
ALL_CANARIES.add(*CODES.values())


@dataclass
class ModelClaim:
    claimant: str
    owner_at_filing: str | None
    until: datetime | None
    approvals: list[str] = field(default_factory=list)


class OwnershipMachine(RuleBasedStateMachine):
    template: Path
    workdir: Path
    counter = 0

    def __init__(self) -> None:
        super().__init__()
        OwnershipMachine.counter += 1
        self.loop = asyncio.new_event_loop()
        here = self.workdir / f"run{OwnershipMachine.counter}"
        here.mkdir()
        shutil.copyfile(self.template, here / "evaccess.db")
        self.clock = ManualClock(datetime(2026, 3, 1, 9, 0, tzinfo=UTC))
        self.ctx: Context = self.run(
            make_context(
                f"sqlite+aiosqlite:///{here / 'evaccess.db'}",
                here / "keys",
                clock=self.clock,
                rng=SeededRandom(0),  # the same steps, the same PINs: a replay reproduces
            )
        )
        self.actors: dict[str, Actor] = {}
        # The model.
        self.owner: str | None = "ann"
        self.grants: dict[str, set[GrantKind]] = {}
        self.service_until: dict[str, datetime] = {}
        self.open_transfer: tuple[str, str] | None = None  # (id, recipient)
        self.shown: dict[str, set[str]] = {p: set() for p in PEOPLE}
        """PINs each person was shown during the current ownership..."""
        self.shown_before: dict[str, set[str]] = {p: set() for p in PEOPLE}
        """...and during earlier ones (which a handover must make worthless)."""
        self.handovers = 0
        self.claims: dict[str, ModelClaim] = {}  # the open ones
        self.claims_filed: list[datetime] = []

    def run(self, coroutine: Any) -> Any:
        return self.loop.run_until_complete(coroutine)

    def teardown(self) -> None:
        async def close() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.ctx.db.dispose()

        self.run(close())
        self.loop.close()

    @initialize()
    def world(self) -> None:
        async def build() -> None:
            ctx = self.ctx
            admin = await accounts.create_user(ctx, "admin@example.com", PASSWORD)
            admin_actor = Actor(user_id=admin.id, email=admin.email)
            org = await organisations.create_organisation(ctx, as_system(admin_actor), "Acme")
            await organisations.update_settings(ctx, admin_actor, org.id, offline_keypad=True)
            for name in PEOPLE:
                user = await accounts.create_user(ctx, f"{name}@example.com", PASSWORD)
                self.actors[name] = Actor(user_id=user.id, email=user.email)
                await organisations.add_member(ctx, admin_actor, org.id, user.email, Role.USER)
                await keypad_pins.set_pin(ctx, admin_actor, org.id, user.id, CODES[name])
            reg = await registration.register(
                ctx, admin_actor, organisation_id=org.id, serial=SERIAL, vendor="Wallbox",
                model="Commander 2", firmware="6.11.4", keypad=True,
                owner_email="ann@example.com",
            )  # fmt: skip
            self.charger_id = reg.charger.id
            await confirm_pin_push(ctx, SERIAL)
            for name in AGENTS:
                user = await accounts.create_user(ctx, f"{name}@support.example", PASSWORD)
                await accounts.set_staff_role(ctx, user.email, StaffRole.SUPPORT)
                self.actors[name] = Actor(
                    user_id=user.id, email=user.email, staff_role=StaffRole.SUPPORT
                )

        self.run(build())

    # --- helpers ------------------------------------------------------------------------------

    def with_access(self) -> set[str]:
        people = set(self.grants)
        return people | ({self.owner} if self.owner else set())

    def attempt(self, coroutine: Any) -> Any:
        """Run; an ``EvAccessError`` comes back as the value (the model says which)."""
        try:
            return self.run(coroutine)
        except EvAccessError as error:
            return error

    def handed_over(self, new_owner: str | None) -> None:
        self.owner = new_owner
        self.grants, self.service_until, self.open_transfer = {}, {}, None
        self.claims = {}  # every open claim is superseded (or, one, completed)
        for person in PEOPLE:
            self.shown_before[person] |= self.shown[person]
            self.shown[person] = set()
        self.handovers += 1
        assert self.run(confirm_pin_push(self.ctx, SERIAL)) is not None  # the rotated PIN

    # --- rules ----------------------------------------------------------------------------

    @precondition(lambda self: self.owner is not None)
    @rule(person=st.sampled_from(PEOPLE), kind=st.sampled_from([GrantKind.USER, GrantKind.SERVICE]))
    def invite(self, person: str, kind: GrantKind) -> None:
        assert self.owner is not None
        if person == self.owner:
            return
        issued = self.run(
            invitations.invite(
                self.ctx, self.actors[self.owner], self.charger_id,
                email=f"{person}@example.com", kind=kind,
            )
        )  # fmt: skip
        ALL_CANARIES.add(issued.token)
        self.run(invitations.accept_invitation(self.ctx, self.actors[person], issued.token))
        self.grants.setdefault(person, set()).add(kind)
        if kind is GrantKind.SERVICE and person not in self.service_until:
            self.service_until[person] = self.clock.now() + SERVICE_ACCESS_TTL

    @rule(person=st.sampled_from(PEOPLE))
    def reveal(self, person: str) -> None:
        result = self.attempt(bluetooth_pins.reveal(self.ctx, self.actors[person], self.charger_id))
        if person in self.with_access():
            assert not isinstance(result, EvAccessError), result
            ALL_CANARIES.add(result.pin)
            self.shown[person].add(result.pin)
        else:
            assert isinstance(result, NotFound)

    @rule(by=st.sampled_from(PEOPLE), to=st.sampled_from(PEOPLE))
    def start_transfer(self, by: str, to: str) -> None:
        result = self.attempt(
            transfers.start_transfer(
                self.ctx, self.actors[by], self.charger_id, f"{to}@example.com"
            )
        )
        if by == self.owner and to != by and self.open_transfer is None:
            assert not isinstance(result, EvAccessError), result
            self.open_transfer = (result.id, to)
        else:
            assert isinstance(result, EvAccessError)

    @precondition(lambda self: self.open_transfer is not None)
    @rule(person=st.sampled_from(PEOPLE))
    def accept(self, person: str) -> None:
        assert self.open_transfer is not None
        transfer_id, recipient = self.open_transfer
        result = self.attempt(transfers.accept_transfer(self.ctx, self.actors[person], transfer_id))
        if person != recipient:
            assert isinstance(result, EvAccessError)
            return
        assert not isinstance(result, EvAccessError), result
        self.handed_over(recipient)

    @precondition(lambda self: self.open_transfer is not None)
    @rule()
    def cancel(self) -> None:
        assert self.open_transfer is not None and self.owner is not None
        self.run(
            transfers.cancel_transfer(self.ctx, self.actors[self.owner], self.open_transfer[0])
        )
        self.open_transfer = None

    @rule(person=st.sampled_from(PEOPLE))
    def release(self, person: str) -> None:
        result = self.attempt(transfers.release(self.ctx, self.actors[person], self.charger_id))
        if person == self.owner:
            assert not isinstance(result, EvAccessError), result
            self.handed_over(None)
        else:
            assert isinstance(result, EvAccessError)

    @rule(person=st.sampled_from(PEOPLE))
    def file_claim(self, person: str) -> None:
        result = self.attempt(
            claims.file_claim(
                self.ctx, self.actors[person], SERIAL, installation_address="1 Quay St",
                installer_name="Volt", document=b"%PDF-1.7\n%%EOF\n",
            )
        )  # fmt: skip
        now = self.clock.now()
        recent = [t for t in self.claims_filed if t > now - CLAIMS_PERIOD]
        pending = any(c.claimant == person for c in self.claims.values())
        if person == self.owner or pending or len(recent) >= CLAIMS_PER_CHARGER:
            assert isinstance(result, EvAccessError), result
            return
        assert not isinstance(result, EvAccessError), result
        self.claims_filed.append(now)
        until = now + OBJECTION_WINDOW if self.owner else None
        self.claims[result.id] = ModelClaim(person, self.owner, until)

    @precondition(lambda self: bool(self.claims))
    @rule(
        agents=st.sampled_from([("sue",), ("tom",), ("sue", "tom"), ("tom", "tom")]),
        pick=st.integers(0, 3),
    )
    def approve(self, agents: tuple[str, ...], pick: int) -> None:
        """One approval, or two in a row (by two agents, or the same one twice)."""
        claim_id = sorted(self.claims)[pick % len(self.claims)]
        claim = self.claims[claim_id]
        for agent in agents:
            result = self.attempt(claims.approve(self.ctx, self.actors[agent], claim_id))
            if agent in claim.approvals or len(claim.approvals) == 2:
                assert isinstance(result, EvAccessError), result
                continue
            assert not isinstance(result, EvAccessError), result
            claim.approvals.append(agent)
            if len(claim.approvals) == 2 and claim.owner_at_filing is None:
                assert result.handover is not None
                self.handed_over(claim.claimant)
                return
            assert result.handover is None

    @precondition(lambda self: bool(self.claims))
    @rule(person=st.sampled_from(PEOPLE), pick=st.integers(0, 3))
    def object_to_claim(self, person: str, pick: int) -> None:
        claim_id = sorted(self.claims)[pick % len(self.claims)]
        claim = self.claims[claim_id]
        result = self.attempt(claims.object_to(self.ctx, self.actors[person], claim_id))
        in_time = claim.until is not None and self.clock.now() < claim.until
        if person == claim.owner_at_filing and in_time:
            assert not isinstance(result, EvAccessError), result
            del self.claims[claim_id]
        else:
            assert isinstance(result, EvAccessError), result

    @rule(days=st.sampled_from([1, 7, 14]))
    def time_passes(self, days: int) -> None:
        self.clock.advance(timedelta(days=days).total_seconds())
        now = self.clock.now()
        due = {
            c.claimant
            for c in self.claims.values()
            if len(c.approvals) == 2 and c.until is not None and c.until <= now
        }
        settled = self.run(claims.complete_due(self.ctx))
        if due:
            assert settled >= 1
            owner_id = self.run(self._owner_id())
            [new_owner] = [p for p in due if self.actors[p].user_id == owner_id]
            self.handed_over(new_owner)
        else:
            assert settled == 0
        if self.open_transfer is not None:
            transfer_id, recipient = self.open_transfer
            offered = self.run(transfers.list_transfers(self.ctx, self.actors[recipient]))
            [row] = [t for t in offered if t.id == transfer_id]
            if row.expires_at <= now:
                self.open_transfer = None
        for person, until in list(self.service_until.items()):
            if until <= now:
                del self.service_until[person]
                self.grants[person].discard(GrantKind.SERVICE)
                if not self.grants[person]:
                    del self.grants[person]
        self.run(transfers.expire_transfers(self.ctx))

    async def _owner_id(self) -> str | None:
        async with self.ctx.db.read() as session:
            owned = await ownership.current(session, self.charger_id)
            return owned.owner_id if owned else None

    # --- invariants ----------------------------------------------------------------------

    @invariant()
    def support_agents_never_get_in(self) -> None:
        if not self.actors:
            return

        async def check(agent: str) -> None:
            async with self.ctx.db.read() as session:
                try:
                    await charger_for(
                        session, self.actors[agent], self.charger_id, ChargerAction.VIEW,
                        self.clock,
                    )  # fmt: skip
                except NotFound:
                    return
                raise AssertionError(f"{agent} sees the charger")

        for agent in AGENTS:
            self.run(check(agent))

    @invariant()
    def exactly_one_owner_or_none(self) -> None:
        if not self.actors:
            return

        async def owners() -> tuple[int, str | None]:
            async with self.ctx.db.read() as session:
                count = await session.scalar(
                    select(func.count()).where(
                        Ownership.charger_id == self.charger_id, Ownership.ended_at.is_(None)
                    )
                )
                owned = await ownership.current(session, self.charger_id)
                return int(count or 0), owned.owner_id if owned else None

        count, owner_id = self.run(owners())
        assert count == (1 if self.owner else 0)
        assert owner_id == (self.actors[self.owner].user_id if self.owner else None)

    @invariant()
    def only_the_current_ownership_sees_controls_and_uses_the_keypad(self) -> None:
        if not self.actors:
            return
        inside = self.with_access()

        async def check(person: str) -> None:
            async with self.ctx.db.read() as session:
                for action in (ChargerAction.VIEW, ChargerAction.MANAGE_PHONES):
                    try:
                        await charger_for(
                            session, self.actors[person], self.charger_id, action, self.clock
                        )
                        allowed = True
                    except EvAccessError:
                        allowed = False
                    if action is ChargerAction.VIEW:
                        assert allowed == (person in inside), (person, action)
                    elif person not in inside:
                        assert not allowed, (person, action)
            found = await keypad_pins._lookup(self.ctx, self.charger_id, CODES[person])
            assert (found == self.actors[person].user_id) == (person in inside), person

        for person in PEOPLE:
            self.run(check(person))

    @invariant()
    def nobody_outside_can_pair_with_a_pin_they_were_shown(self) -> None:
        if not self.actors:
            return

        async def enforced() -> str | None:
            async with self.ctx.db.read() as session:
                slots = _slots(await session.get(BluetoothPin, self.charger_id))
                return (
                    None
                    if slots.enforced is None
                    else self.ctx.vault.open(self.charger_id, slots.enforced)
                )

        pin = self.run(enforced())
        # Within one ownership, a person whose access ended may still know the PIN (it is
        # not rotated for that; their phone credential is revoked): the handover rotates it.
        for person in set(PEOPLE) - self.with_access():
            assert pin not in self.shown_before[person], person

    @invariant()
    def every_handover_told_the_charger_to_forget_every_phone(self) -> None:
        if not self.actors:
            return

        async def revocations() -> int:
            async with self.ctx.db.read() as session:
                return int(
                    await session.scalar(
                        select(func.count()).where(
                            OutboxCommand.charger_id == self.charger_id,
                            OutboxCommand.kind == "revoke_credentials",
                        )
                    )
                    or 0
                )

        assert self.run(revocations()) == self.handovers


def test_ownership_invariants_hold_at_every_step(sqlite_template: Path, tmp_path: Path) -> None:
    OwnershipMachine.template = sqlite_template
    OwnershipMachine.workdir = tmp_path
    run_state_machine_as_test(
        OwnershipMachine,
        settings=settings(
            max_examples=25,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
            derandomize=True,
        ),
    )
