"""The suite-wide frame guard (``frame_guard.py``) is on and catches what it must: a guard
that silently validated nothing would pass every test."""

from __future__ import annotations

import os
import subprocess
import sys
from types import SimpleNamespace

from evaccess.protocol.ocpp_frames import OcppVersion
from evaccess.server.ocpp import handlers
from evaccess.server.ocpp.handlers import Reply
from evaccess.server.ocpp.session import OcppSession

from .frame_guard import FRAME_LOG_ENV, RECORDER, FrameRecorder


def test_the_send_path_is_wrapped_for_this_run() -> None:
    assert OcppSession._send.recorder is RECORDER  # type: ignore[attr-defined]


def test_recorder_catches_nonconforming_frames() -> None:
    recorder = FrameRecorder()
    session = SimpleNamespace(version=OcppVersion.V201)
    recorder.sent(session, '[2,"x","SetVariables",{}]')  # setVariableData missing
    recorder.sent(session, '[4,"y","Oops","d",{}]')  # no such errorCode
    recorder.sent(session, '[4,"z","GenericError","d",{"echo":"4711"}]')  # details echo
    recorder.sent(session, '[3,"never-asked",{}]')  # a result to no CALL
    recorder.sent(session, '[2,"t","TransactionEvent",{"seqNo":1}]')
    v16 = SimpleNamespace(version=OcppVersion.V16)
    recorder.sent(v16, '[4,"a","FormatViolation","d",{}]')  # the 2.0.1 spelling in 1.6
    assert len(recorder.errors) == 6
    assert all("4711" not in error for error in recorder.errors)


async def test_an_invalid_frame_from_a_real_session_is_caught(
    open_charger, monkeypatch, frame_recorder: FrameRecorder
) -> None:
    async def heartbeat_without_time(ctx, payload):
        return Reply(payload={})  # HeartbeatResponse requires currentTime

    key = (OcppVersion.V201, "Heartbeat")
    monkeypatch.setitem(handlers.HANDLERS, key, heartbeat_without_time)
    before = len(frame_recorder.errors)
    charger = await open_charger()
    await charger.call("Heartbeat", {})
    caught = frame_recorder.errors[before:]
    assert len(caught) == 1 and "currentTime" in caught[0]
    del frame_recorder.errors[before:]  # expected here: the test passes


def test_a_server_subprocess_is_guarded_too(tmp_path) -> None:
    log = tmp_path / "frames.log"
    code = (
        "import asyncio\n"
        "from types import SimpleNamespace\n"
        "from evaccess.server.ocpp.session import OcppSession\n"
        "from evaccess.protocol.ocpp_frames import OcppVersion\n"
        "s = OcppSession.__new__(OcppSession)\n"
        "s.version = OcppVersion.V201\n"
        "s.charger_id = 'CP1'\n"
        "s.connection = SimpleNamespace(send=lambda text: asyncio.sleep(0))\n"
        'asyncio.run(s._send(\'[2,"s1","SetVariables",{}]\'))\n'
        'asyncio.run(s._send(\'[4,"s2","GenericError","d",{}]\'))\n'
    )
    env = {**os.environ, FRAME_LOG_ENV: str(log)}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)
    lines = log.read_text().splitlines()
    assert [line.split()[0] for line in lines] == ["INVALID", "OK"]
