"""A pytest plugin (``tests/conftest.py`` loads it for the whole suite): every frame any
evaccess OCPP session sends, in any test, in both versions, over ws or wss, compressed or
not, is validated as it is sent by an independent validator, ``jsonschema``, against the OCA
JSON schemas shipped in the ``ocpp`` package (v16, v201); the server's own validation is
fastjsonschema. A test during which the server sent an invalid frame fails.

It cannot silently do nothing: ``tests/ocpp/test_frame_guard.py`` checks that the send path
is wrapped and that an invalid frame sent by a real session fails the check. The session
summary prints how many frames were validated.

Subprocesses (``tests/e2e``: ``evaccess server run``) are covered by the same check run in
the child: ``install_in_subprocesses`` puts ``tests/ocpp/subprocess_guard`` first on the
children's ``PYTHONPATH``; its ``sitecustomize`` wraps the session when (and only when) the
child imports it, and appends any invalid frame to the file ``TESTS_OCPP_FRAME_LOG``
names, which the plugin reads after each test.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest

# RPC framework error codes per version (2.0.1 Part 4 §4.2.3; OCPP-J 1.6 §4.2.3).
ERROR_CODES = {
    "ocpp2.0.1": {
        "FormatViolation",
        "GenericError",
        "InternalError",
        "MessageTypeNotSupported",
        "NotImplemented",
        "NotSupported",
        "OccurrenceConstraintViolation",
        "PropertyConstraintViolation",
        "ProtocolError",
        "RpcFrameworkError",
        "SecurityError",
        "TypeConstraintViolation",
    },
    "ocpp1.6": {
        "NotImplemented",
        "NotSupported",
        "InternalError",
        "ProtocolError",
        "SecurityError",
        "FormationViolation",
        "PropertyConstraintViolation",
        "OccurenceConstraintViolation",
        "TypeConstraintViolation",
        "GenericError",
    },
}


@functools.cache
def _validator(version: str, action: str, response: bool) -> Any:
    folder = "v201" if version == "ocpp2.0.1" else "v16"
    if version == "ocpp2.0.1":
        name = f"{action}{'Response' if response else 'Request'}.json"
    else:
        name = f"{action}{'Response' if response else ''}.json"
    path = resources.files("ocpp") / folder / "schemas" / name
    schema = json.loads(path.read_text(encoding="utf-8-sig"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


class FrameRecorder:
    """Every frame the sessions send, validated with jsonschema as it is sent."""

    def __init__(self) -> None:
        self.frames = 0
        self.errors: list[str] = []
        self._inbound_actions: dict[tuple[int, str], str] = {}

    def inbound_call(self, session: Any, message_id: str, action: str) -> None:
        self._inbound_actions[(id(session), message_id)] = action

    def sent(self, session: Any, text: str) -> None:
        version = str(session.version.value)
        self.frames += 1
        try:
            frame = json.loads(text)
            if frame[0] == 2:
                assert len(frame) == 4, "CALL must be [2, id, action, payload]"
                _validator(version, frame[2], False).validate(frame[3])
            elif frame[0] == 3:
                assert len(frame) == 3, "CALLRESULT must be [3, id, payload]"
                action = self._inbound_actions.pop((id(session), frame[1]))
                _validator(version, action, True).validate(frame[2])
            else:
                assert frame[0] == 4 and len(frame) == 5, (
                    "CALLERROR must be [4, id, code, text, {}]"
                )
                assert frame[2] in ERROR_CODES[version], f"no {version} errorCode {frame[2]!r}"
                assert isinstance(frame[3], str) and len(frame[3]) <= 255, "errorDescription"
                assert frame[4] == {}, "CallError details must not echo anything"
        except (
            AssertionError,
            KeyError,
            IndexError,
            ValueError,
            jsonschema.ValidationError,
        ) as exc:
            # The frame itself may hold a secret: name the frame by its type and id only.
            where = text[:40].split(",{", 1)[0]
            self.errors.append(f"{version} {where}...: {type(exc).__name__}: {_short(exc)}")


def _short(exc: BaseException) -> str:
    if isinstance(exc, jsonschema.ValidationError):
        where = "/".join(map(str, exc.absolute_path)) or "payload"
        if exc.validator in ("required", "additionalProperties"):
            return f"{where}: {exc.message}"  # names fields, never a value
        return f"{where}: violates '{exc.validator}'"
    return str(exc).splitlines()[0][:200] if str(exc) else ""


RECORDER = FrameRecorder()


def install(recorder: FrameRecorder = RECORDER) -> None:
    """Wrap the session's one send path (and note each inbound CALL's action) for
    ``recorder``; a later call replaces an earlier guard (an xdist worker inherits the
    subprocess guard of its parent's environment, then installs its own)."""
    from evaccess.server.ocpp.session import OcppSession

    original_send = getattr(OcppSession._send, "unguarded", OcppSession._send)
    original_on_call = getattr(OcppSession._on_call, "unguarded", OcppSession._on_call)

    async def send(self: OcppSession, text: str) -> None:
        recorder.sent(self, text)
        await original_send(self, text)

    async def on_call(self: OcppSession, call: Any, size: int) -> None:
        recorder.inbound_call(self, call.message_id, call.action)
        await original_on_call(self, call, size)

    send.unguarded = original_send  # type: ignore[attr-defined]
    send.recorder = recorder  # type: ignore[attr-defined]
    on_call.unguarded = original_on_call  # type: ignore[attr-defined]
    OcppSession._send = send  # type: ignore[method-assign]
    OcppSession._on_call = on_call  # type: ignore[method-assign]


SUBPROCESS_DIR = Path(__file__).parent / "subprocess_guard"
FRAME_LOG_ENV = "TESTS_OCPP_FRAME_LOG"
"""Not EVACCESS_-prefixed: tests/e2e strips those from the children's environment."""


def install_in_subprocesses(log_file: Path) -> None:
    log_file.write_text("")
    os.environ[FRAME_LOG_ENV] = str(log_file)
    paths = [str(SUBPROCESS_DIR), str(Path(__file__).parents[2])]
    if os.environ.get("PYTHONPATH"):
        paths.append(os.environ["PYTHONPATH"])
    os.environ["PYTHONPATH"] = os.pathsep.join(paths)


_read_lines = [0]


def _subprocess_lines() -> list[str]:
    path = os.environ.get(FRAME_LOG_ENV)
    if not path or not Path(path).exists():
        return []
    return Path(path).read_text(encoding="utf-8").splitlines()


def _subprocess_errors() -> list[str]:
    """Invalid frames the children logged since the last call."""
    lines = _subprocess_lines()
    new, _read_lines[0] = lines[_read_lines[0] :], len(lines)
    return [line for line in new if line.startswith("INVALID ")]


def subprocess_frames() -> int:
    return sum(1 for line in _subprocess_lines() if line.startswith("OK "))


# --- pytest hooks --------------------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    install()
    tmp = Path(config.rootpath) / ".pytest_cache" / f"frames-{os.getpid()}.log"
    tmp.parent.mkdir(parents=True, exist_ok=True)
    install_in_subprocesses(tmp)


def pytest_unconfigure(config: pytest.Config) -> None:
    path = os.environ.get(FRAME_LOG_ENV)
    if path:
        Path(path).unlink(missing_ok=True)


@pytest.fixture(autouse=True)
def _frames_conform() -> Iterator[None]:
    """Fail the test during which an evaccess session sent a frame the schemas refuse."""
    before = len(RECORDER.errors)
    _subprocess_errors()
    yield
    invalid = RECORDER.errors[before:] + _subprocess_errors()
    assert invalid == [], f"the OCPP server sent invalid frames: {invalid}"


@pytest.fixture
def frame_recorder() -> FrameRecorder:
    return RECORDER


_WORKER_COUNTS: list[dict[str, int]] = []


def _counts() -> dict[str, int]:
    return {
        "in_process": RECORDER.frames,
        "children": subprocess_frames(),
        "invalid": len(RECORDER.errors),
    }


def pytest_sessionfinish(session: pytest.Session) -> None:
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: the controller sums and reports
        workeroutput["frame_guard"] = _counts()


def pytest_testnodedown(node: Any, error: object) -> None:
    found = getattr(node, "workeroutput", {}).get("frame_guard")
    if found is not None:
        _WORKER_COUNTS.append(found)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    counts = [_counts(), *_WORKER_COUNTS]
    in_process, children, invalid = (sum(c[k] for c in counts) for k in _counts())
    if in_process or children:
        terminalreporter.write_line(
            f"OCPP frame guard: {in_process} frames sent in process and {children} by "
            f"server subprocesses validated with jsonschema, {invalid} invalid"
        )
