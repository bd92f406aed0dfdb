"""One charger's OCPP-J session: inbound dispatch and the outbound command path.

Inbound CALLs are parsed, validated with compiled schemas and dispatched through
``handlers.HANDLERS`` one at a time (OCPP-J allows one outstanding CALL per direction,
2.0.1 Part 4 §4.1.1). Outbound, the session is a small state machine driven by the same
receive loop: at most one server CALL in flight; its CALLRESULT (or CALLERROR, or timeout)
completes the step and sends the next. Nothing awaits a charger's answer inside a request
handler, and no task lives for the whole connection besides the one websockets runs.

Three rules keep the outbound path right when fetches, answers and a boot interleave
(issue 11): a job leaves the queue when its CALL is sent, so an answer finds its job by
message id, never by position; a command is checked against the backend's open commands
just before it is sent (a boot may have superseded it since it was fetched); and no CALL
goes out before the connection's BootNotification is answered (``commands.SERVER_CALLS``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from itertools import count
from typing import Any, Final

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from evaccess.domain.clock import Clock
from evaccess.protocol.ocpp_frames import (
    Call,
    CallResult,
    FrameError,
    OcppVersion,
    PayloadKind,
    RpcError,
    SchemaRegistry,
    describe_frame,
    encode_call,
    encode_call_error,
    encode_call_result,
    parse_frame,
)
from evaccess.server.ocpp.backend import ChargerCommand, OcppBackend, SendLocalList
from evaccess.server.ocpp.commands import (
    Registration,
    Step,
    command_steps,
    local_list_version_step,
    may_send,
    reported_list_version,
)
from evaccess.server.ocpp.errors import call_error_for, is_internal
from evaccess.server.ocpp.handlers import HANDLERS, HandlerContext

log = logging.getLogger("evaccess.server.ocpp")

BOOT_NOTIFICATION: Final = "BootNotification"


@dataclass(kw_only=True, slots=True)
class SessionCounters:
    """Counters shared by all sessions of one server (``OcppServer.stats``)."""

    calls_received: int = 0
    call_errors_sent: int = 0
    calls_sent: int = 0
    commands_accepted: int = 0
    commands_rejected: int = 0
    call_timeouts: int = 0


@dataclass(kw_only=True, slots=True, eq=False)
class _Job:
    """A command (or the local list probe) on its way to the charger."""

    command_id: str | None
    steps: tuple[Step, ...]
    on_done: Callable[[bool, dict[str, Any]], Awaitable[None]]
    index: int = 0


@dataclass(kw_only=True, slots=True)
class _InFlight:
    job: _Job
    message_id: str
    timer: asyncio.TimerHandle | None = field(default=None)


class OcppSession:
    """The state of one connected charger (``__slots__``: thousands stay idle in memory)."""

    __slots__ = (
        "_background",
        "_closed",
        "_counters",
        "_ctx",
        "_done_ids",
        "_fetching",
        "_in_flight",
        "_jobs",
        "_message_ids",
        "_queued_ids",
        "_refetch",
        "_registration",
        "_schemas",
        "_sending",
        "bytes_per_message",
        "call_timeout_s",
        "charger_id",
        "connection",
        "version",
    )

    def __init__(
        self,
        *,
        charger_id: str,
        version: OcppVersion,
        connection: ServerConnection,
        backend: OcppBackend,
        clock: Clock,
        schemas: SchemaRegistry,
        counters: SessionCounters,
        background: set[asyncio.Task[None]],
        call_timeout_s: float,
        bytes_per_message: int,
    ) -> None:
        self.charger_id = charger_id
        self.version = version
        self.connection = connection
        self.call_timeout_s = call_timeout_s
        self.bytes_per_message = bytes_per_message
        self._ctx = HandlerContext(
            charger_id=charger_id, version=version, backend=backend, clock=clock
        )
        self._schemas = schemas
        self._counters = counters
        self._background = background
        self._jobs: list[_Job] = []
        """Waiting to be sent, in order; a job leaves it when its CALL is sent. A list, not
        a deque: it holds a job or two, and an empty deque costs every idle charger 624
        bytes against a list's 56."""
        self._queued_ids: set[str] = set()
        self._done_ids: set[str] = set()
        self._in_flight: _InFlight | None = None
        self._message_ids = count(1)
        self._fetching = False
        self._refetch = False
        self._sending = False
        self._registration = Registration.CONNECTED
        self._closed = False

    # --- lifecycle ---------------------------------------------------------------------

    async def run(self) -> None:
        """Serve the connection until it closes."""
        try:
            # On every connect: ask for the local list version (2.0.1 D02), then the outbox;
            # both wait for the charger's registration (commands.SERVER_CALLS).
            self._jobs.append(
                _Job(
                    command_id=None,
                    steps=(local_list_version_step(self.version),),
                    on_done=self._local_list_version_known,
                )
            )
            self.poke()
            async for message in self.connection:
                await self._on_message(message)
        except ConnectionClosed:
            pass
        finally:
            self._closed = True  # nothing more is sent, no timer outlives the connection
            if self._in_flight is not None and self._in_flight.timer is not None:
                self._in_flight.timer.cancel()
            self._in_flight = None
            self._jobs.clear()

    def poke(self) -> None:
        """Fetch ``pending_commands`` and send what is new (``ChargerNotifier.poke``)."""
        if self._closed:
            return
        if self._fetching:
            self._refetch = True
            return
        self._fetching = True
        self._spawn(self._fetch())

    def _spawn(self, coroutine: Awaitable[None]) -> None:
        async def guarded() -> None:
            try:
                await coroutine
            except ConnectionClosed:
                pass
            except Exception as exc:
                # Type only: a driver's message may quote the values it was given.
                log.error(
                    "charger %s: outbound command path failed: %s",
                    self.charger_id,
                    type(exc).__name__,
                )

        task = asyncio.get_running_loop().create_task(guarded())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _send(self, text: str) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("charger %s <- %s", self.charger_id, describe_frame(text))
        await self.connection.send(text)

    # --- inbound -----------------------------------------------------------------------

    async def _on_message(self, message: str | bytes) -> None:
        try:
            frame = parse_frame(message)
        except FrameError as exc:
            if exc.answerable:
                await self._send_error(exc.message_id, exc.error, exc.description)
            return
        if isinstance(frame, Call):
            size = len(message)
            if isinstance(message, str) and size * 4 > self.bytes_per_message:
                size = len(message.encode())  # exact UTF-8 bytes only when it can matter
            await self._on_request(frame, size)
        elif isinstance(frame, CallResult):
            await self._on_answer(frame.message_id, frame.payload, error=False)
        else:
            await self._on_answer(frame.message_id, {}, error=True)

    async def _send_error(self, message_id: str, error: RpcError, description: str) -> None:
        self._counters.call_errors_sent += 1
        if log.isEnabledFor(logging.DEBUG):
            log.debug("charger %s -> message %s refused: %s", self.charger_id, message_id, error)
        await self._send(encode_call_error(message_id, error, description, self.version))

    async def _on_request(self, call: Call, size: int) -> None:
        """Answer a CALL, and move the registration state it implies."""
        if call.action == BOOT_NOTIFICATION:
            # Held from here until answered Accepted: nothing overtakes the boot's
            # CALLRESULT, and a boot answered with a CALLERROR opens nothing.
            self._registration = Registration.BOOTING
            await self._on_call(call, size)
            return
        await self._on_call(call, size)
        if self._registration is Registration.CONNECTED:
            # A first request other than a boot: the charger reconnected without
            # rebooting and keeps the registration it was accepted with.
            self._registration = Registration.ACCEPTED
            await self._send_next()

    async def _on_call(self, call: Call, size: int) -> None:
        self._counters.calls_received += 1
        if size > self.bytes_per_message:
            # 2.0.1: a message larger than DeviceDataCtrlr.BytesPerMessage is answered
            # with CALLERROR FormatViolation (docs/ocpp.md, "Oversized messages").
            await self._send_error(
                call.message_id,
                RpcError.FORMAT_VIOLATION,
                f"message exceeds BytesPerMessage ({self.bytes_per_message})",
            )
            return
        handler = HANDLERS.get((self.version, call.action))
        if handler is None:
            known = self._schemas.knows(self.version, call.action)
            error = RpcError.NOT_SUPPORTED if known else RpcError.NOT_IMPLEMENTED
            await self._send_error(call.message_id, error, "action not supported by the CSMS")
            return
        try:
            self._schemas.validate(
                self.version,
                call.action,
                PayloadKind.REQUEST,
                call.payload,
                message_id=call.message_id,
            )
        except FrameError as exc:
            await self._send_error(call.message_id, exc.error, exc.description)
            return
        if log.isEnabledFor(logging.DEBUG):
            # Only a payload that passed its schema is logged (masking needs known fields).
            log.debug("charger %s -> %s", self.charger_id, describe_frame(call))
        try:
            reply = await handler(self._ctx, call.payload)
        except Exception as exc:
            # One table (server/ocpp/errors.py); the exception may quote a token: log its
            # type and where, answer its stable code, never its text.
            error, description = call_error_for(exc)
            log.log(
                logging.ERROR if is_internal(error) else logging.INFO,
                "charger %s: %s refused: %s (%s)",
                self.charger_id,
                call.action,
                type(exc).__name__,
                description,
            )
            await self._send_error(call.message_id, error, description)
            return
        await self._send(encode_call_result(call.message_id, reply.payload))
        if reply.registration is not None:
            self._registration = reply.registration
        if reply.flush_outbox:
            self.poke()

    # --- outbound ----------------------------------------------------------------------

    async def _fetch(self) -> None:
        fresh = False
        try:
            while True:
                self._refetch = False
                self._merge(await self._ctx.backend.pending_commands(self.charger_id))
                fresh = not self._refetch
                if fresh:
                    break
        finally:
            self._fetching = False
            # What is queued goes out even if the fetch failed; right after a merge (no
            # await between) the queue needs no second look at the outbox.
            await self._send_next(fresh=fresh)

    def _merge(self, commands: list[ChargerCommand]) -> None:
        """Bring the queue in line with the backend's open commands: queue what is new,
        drop what is no longer open (done, or superseded by a newer command)."""
        open_ids = {command.command_id for command in commands}
        for job in [j for j in self._jobs if j.command_id is not None]:
            if job.command_id not in open_ids:
                self._jobs.remove(job)
                self._queued_ids.discard(job.command_id)
        for command in commands:
            cid = command.command_id
            if cid in self._queued_ids or cid in self._done_ids:
                continue
            self._queued_ids.add(cid)
            steps = command_steps(command, self.version)
            on_done = self._command_done_callback(
                cid, local_list=isinstance(command, SendLocalList)
            )
            if not steps:
                # Nothing this version can carry (1.6J MasterPassGroupId): done, no Call.
                self._spawn(on_done(True, {}))
                continue
            self._jobs.append(_Job(command_id=cid, steps=steps, on_done=on_done))

    def _next_job(self) -> _Job | None:
        """The first waiting job whose next CALL the registration state allows."""
        for job in self._jobs:
            if may_send(self.version, self._registration, job.steps[job.index].action):
                return job
        return None

    async def _send_next(self, *, fresh: bool = False) -> None:
        """Send the next CALL when none is in flight. One caller at a time sends; the
        others return (the sender loops until something is in flight or nothing can go).
        ``fresh``: the queue was merged with the outbox just now."""
        if self._sending:
            return
        self._sending = True
        try:
            checked = fresh
            while not self._closed and self._in_flight is None:
                job = self._next_job()
                if job is None:
                    return
                if job.command_id is not None and job.index == 0 and not checked:
                    # Still open? A boot may have superseded it since it was fetched.
                    checked = True
                    await self._recheck()
                    continue  # the queue (or the registration) may differ after the await
                self._jobs.remove(job)
                await self._send_step(job)
                return
        finally:
            self._sending = False

    async def _recheck(self) -> None:
        try:
            commands = await self._ctx.backend.pending_commands(self.charger_id)
        except Exception as exc:
            # Sent as fetched: at worst the charger gets a superseded command once more.
            log.error(
                "charger %s: rereading the outbox failed: %s",
                self.charger_id,
                type(exc).__name__,
            )
            return
        self._merge(commands)

    async def _send_step(self, job: _Job) -> None:
        step = job.steps[job.index]
        message_id = f"s{next(self._message_ids)}"
        in_flight = _InFlight(job=job, message_id=message_id)
        self._in_flight = in_flight
        in_flight.timer = asyncio.get_running_loop().call_later(
            self.call_timeout_s, self._on_timeout, message_id
        )
        self._counters.calls_sent += 1
        await self._send(encode_call(message_id, step.action, step.payload))

    def _on_timeout(self, message_id: str) -> None:
        in_flight = self._in_flight
        if in_flight is None or in_flight.message_id != message_id:
            return
        self._counters.call_timeouts += 1
        log.warning("charger %s: no answer to %s", self.charger_id, message_id)
        # Left pending in the backend: the next poke or reconnect sends it again.
        self._in_flight = None
        if in_flight.job.command_id is not None:
            self._queued_ids.discard(in_flight.job.command_id)
        self._spawn(self._send_next())

    async def _on_answer(self, message_id: str, payload: dict[str, Any], *, error: bool) -> None:
        in_flight = self._in_flight
        if in_flight is None or in_flight.message_id != message_id:
            return  # late answer to a call that timed out
        if in_flight.timer is not None:
            in_flight.timer.cancel()
        self._in_flight = None
        job = in_flight.job  # by message id: whatever the queue holds meanwhile
        step = job.steps[job.index]
        accepted = not error and self._valid_response(step, payload) and step.accepted(payload)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "charger %s -> answer to %s %s: %s",
                self.charger_id,
                message_id,
                step.action,
                "accepted" if accepted else "refused or invalid",
            )
        if accepted and job.index + 1 < len(job.steps):
            job.index += 1
            self._jobs.insert(0, job)  # its next step goes first
            await self._send_next()
            return
        try:
            await job.on_done(accepted, payload if accepted else {})
        except Exception as exc:
            # The command stays pending in the backend; the next poke or connect retries.
            log.error(
                "charger %s: recording a command result failed: %s",
                self.charger_id,
                type(exc).__name__,
            )
        await self._send_next()

    def _valid_response(self, step: Step, payload: dict[str, Any]) -> bool:
        try:
            self._schemas.validate(self.version, step.action, PayloadKind.RESPONSE, payload)
        except FrameError as exc:
            log.warning(
                "charger %s: invalid %s response (%s)",
                self.charger_id,
                step.action,
                exc.description,
            )
            return False
        return True

    def _command_done_callback(
        self, command_id: str, *, local_list: bool
    ) -> Callable[[bool, dict[str, Any]], Awaitable[None]]:
        async def done(accepted: bool, payload: dict[str, Any]) -> None:
            self._queued_ids.discard(command_id)
            self._done_ids.add(command_id)
            if accepted:
                self._counters.commands_accepted += 1
            else:
                self._counters.commands_rejected += 1
            await self._ctx.backend.command_result(self.charger_id, command_id, accepted=accepted)
            if local_list and not accepted:
                self.poke()  # a refused list update makes the backend queue a full list

        return done

    async def _local_list_version_known(self, answered: bool, payload: dict[str, Any]) -> None:
        """2.0.1 D02 / 1.6 §5.10: a charger whose list differs gets a full list again."""
        if not answered:
            return  # the charger does not support local lists
        charger_version = reported_list_version(payload, self.version)
        backend = self._ctx.backend
        if charger_version != await backend.local_list_version(self.charger_id):
            await backend.request_local_list_resync(
                self.charger_id, charger_version=charger_version
            )
            # The full list supersedes list updates queued before it (the backend dropped
            # them from its outbox): the next fetch drops them here and queues the full
            # list. One already in flight is answered as usual.
            self.poke()
