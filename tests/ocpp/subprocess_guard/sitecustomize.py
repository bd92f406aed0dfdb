"""Loaded by every Python child of the test run (``frame_guard.install_in_subprocesses``
puts this directory on ``PYTHONPATH``): when, and only when, the child imports the OCPP
session module, its send path is wrapped by the suite's frame guard, and each frame sent is
logged to ``TESTS_OCPP_FRAME_LOG`` as ``OK`` or ``INVALID <reason>`` (never the frame)."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys
from typing import Any

_TARGET = "evaccess.server.ocpp.session"
_LOG = os.environ.get("TESTS_OCPP_FRAME_LOG")


class _Recorder:
    def __init__(self, path: str) -> None:
        from tests.ocpp.frame_guard import FrameRecorder

        self._inner = FrameRecorder()
        self._path = path

    def inbound_call(self, session: Any, message_id: str, action: str) -> None:
        self._inner.inbound_call(session, message_id, action)

    def sent(self, session: Any, text: str) -> None:
        before = len(self._inner.errors)
        self._inner.sent(session, text)
        line = "OK" if len(self._inner.errors) == before else f"INVALID {self._inner.errors[-1]}"
        with open(self._path, "a", encoding="utf-8") as log:
            log.write(f"{line} pid={os.getpid()}\n")


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != _TARGET:
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        original_exec = loader.exec_module  # type: ignore[attr-defined]

        def exec_module(module: Any) -> None:
            original_exec(module)
            from tests.ocpp.frame_guard import install

            assert _LOG is not None
            install(_Recorder(_LOG))  # type: ignore[arg-type]

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


if _LOG:
    sys.meta_path.insert(0, _Finder())
