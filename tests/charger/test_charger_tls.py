"""The charger firmware on security profile 3 (issue 11): against the evaccess endpoint in
process, over mutual TLS, with its client certificate and no password."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from evaccess.charger.ocpp_client import client_tls_context
from evaccess.domain.clock import ManualClock
from evaccess.domain.errors import ConfigurationError
from evaccess.protocol.ocpp_frames import OcppVersion
from evaccess.server.ocpp.memory_backend import InMemoryOcppBackend
from evaccess.server.ocpp.server import serve_ocpp
from evaccess.server.ocpp.tls import server_tls_context
from tests.charger.conftest import PASSWORD, SERIAL, make_config, start_charger
from tests.charger.csms import eventually
from tests.ocpp.certs import Pki


@pytest.mark.parametrize("protocol", ["ocpp2.0.1", "ocpp1.6"])
async def test_charger_boots_over_mutual_tls_without_a_password(
    tmp_path: Path, protocol: str
) -> None:
    pki = Pki.create(tmp_path / "pki")
    backend = InMemoryOcppBackend(clock=ManualClock())
    backend.add_charger(SERIAL, PASSWORD, organisation_id="org-1")
    context = server_tls_context([pki.rsa, pki.ecdsa], client_ca=pki.charger_ca.cert_file)
    server = await serve_ocpp(backend, host="127.0.0.1", port=0, ssl=context)
    backend.notifier = server.notifier
    cert = pki.charger_cert(SERIAL)
    config = make_config(
        tmp_path,
        SimpleNamespace(url=f"wss://127.0.0.1:{server.port}/ocpp"),
        protocol=OcppVersion(protocol),
        password="",
        ca_file=pki.server_ca.cert_file,
        client_cert=cert.cert_file,
        client_key=cert.key_file,
    )
    running = start_charger(config)
    try:
        await running.booted()
        await eventually(lambda: server.stats()["accepted_by_certificate"] == 1)
        assert server.stats()["refused_missing_credentials"] == 0
    finally:
        await running.stop()
        await server.close()


def test_client_tls_context_is_only_for_wss_and_fails_in_one_line(tmp_path: Path) -> None:
    fake = SimpleNamespace(url="ws://127.0.0.1:9000/ocpp")
    assert client_tls_context(make_config(tmp_path, fake)) is None
    wss = SimpleNamespace(url="wss://127.0.0.1:9000/ocpp")
    missing = tmp_path / "nope.pem"
    with pytest.raises(ConfigurationError, match="--ca-file"):
        client_tls_context(make_config(tmp_path, wss, ca_file=missing))
    with pytest.raises(ConfigurationError, match="--client-cert"):
        client_tls_context(make_config(tmp_path, wss, client_cert=missing, client_key=missing))
