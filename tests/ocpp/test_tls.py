"""Security profiles 2 and 3 over real TLS (issue 11): the four cipher suites of OCPP 2.0.1
A00.FR.318, each negotiated alone by a TLS 1.2 client, and mutual TLS where the client
certificate's CN is the charger's identity."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidHandshake, InvalidStatus

from evaccess.domain.errors import ConfigurationError
from evaccess.server.ocpp.memory_backend import InMemoryOcppBackend
from evaccess.server.ocpp.server import OcppServer, serve_ocpp
from evaccess.server.ocpp.tls import A00_FR_318_SUITES, CertificateChain, server_tls_context
from evaccess.server.services.ocpp_backend import DbOcppBackend
from evaccess.server.settings import load_settings
from tests.server.support import build_world

from .certs import Pki
from .conftest import PASSWORD, RawCharger, basic_auth


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki.create(tmp_path_factory.mktemp("pki"))


async def _serve(backend: InMemoryOcppBackend, clock, context: ssl.SSLContext) -> OcppServer:
    server = await serve_ocpp(backend, host="127.0.0.1", port=0, ssl=context, clock=clock)
    backend.notifier = server.notifier
    return server


@pytest.fixture
async def tls_server(pki: Pki, backend: InMemoryOcppBackend, clock) -> AsyncIterator[OcppServer]:
    context = server_tls_context([pki.rsa, pki.ecdsa], client_ca=pki.charger_ca.cert_file)
    server = await _serve(backend, clock, context)
    yield server
    await server.close()


def client_context(
    pki: Pki, *, suite: str | None = None, cert: CertificateChain | None = None
) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cafile=pki.server_ca.cert_file)
    if suite is not None:
        context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_2
        context.set_ciphers(suite)
    if cert is not None:
        context.load_cert_chain(cert.cert_file, cert.key_file)
    return context


async def _open(
    server: OcppServer, context: ssl.SSLContext, charger_id: str = "CP1", *, password: bool = True
) -> ClientConnection:
    return await connect(
        f"wss://127.0.0.1:{server.port}/ocpp/{charger_id}",
        ssl=context,
        subprotocols=["ocpp2.0.1"],  # type: ignore[list-item]
        additional_headers=basic_auth(charger_id, PASSWORD) if password else None,
    )


REFUSED_AT_HANDSHAKE = (ssl.SSLError, ConnectionError, InvalidHandshake, EOFError)


async def _open_and_read(server: OcppServer, context: ssl.SSLContext) -> None:
    ws = await _open(server, context, password=True)
    await ws.recv()  # TLS 1.3: the server's alert arrives after the client's Finished


async def _heartbeat(ws: ClientConnection) -> None:
    charger = RawCharger(ws, "ocpp2.0.1")
    try:
        assert (await charger.call("Heartbeat", {}))[0] == 3
    finally:
        await charger.close()


def test_the_four_suites_are_the_ones_ocpp_names() -> None:
    assert A00_FR_318_SUITES == (
        "ECDHE-ECDSA-AES128-GCM-SHA256",  # TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
        "ECDHE-ECDSA-AES256-GCM-SHA384",  # TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
        "AES128-GCM-SHA256",  # TLS_RSA_WITH_AES_128_GCM_SHA256
        "AES256-GCM-SHA384",  # TLS_RSA_WITH_AES_256_GCM_SHA384
    )


@pytest.mark.parametrize("suite", A00_FR_318_SUITES)
async def test_profile_2_negotiates_each_required_suite(
    pki: Pki, tls_server: OcppServer, suite: str
) -> None:
    ws = await _open(tls_server, client_context(pki, suite=suite))
    cipher, protocol, _ = ws.transport.get_extra_info("cipher")
    assert (cipher, protocol) == (suite, "TLSv1.2")
    await _heartbeat(ws)


async def test_profile_2_still_refuses_a_wrong_password(pki: Pki, tls_server: OcppServer) -> None:
    with pytest.raises(InvalidStatus) as caught:
        await connect(
            f"wss://127.0.0.1:{tls_server.port}/ocpp/CP1",
            ssl=client_context(pki),
            subprotocols=["ocpp2.0.1"],  # type: ignore[list-item]
            additional_headers=basic_auth("CP1", "not-the-password-at-all"),
        )
    assert caught.value.response.status_code == 401


async def test_one_certificate_offers_only_its_own_suites(
    pki: Pki, backend: InMemoryOcppBackend, clock, caplog: pytest.LogCaptureFixture
) -> None:
    server = await _serve(backend, clock, server_tls_context([pki.ecdsa]))
    assert "A00.FR.318" in caplog.text
    try:
        with pytest.raises(REFUSED_AT_HANDSHAKE):
            await _open(server, client_context(pki, suite="AES128-GCM-SHA256"))
    finally:
        await server.close()


def test_two_certificates_of_one_key_type_are_a_configuration_error(pki: Pki) -> None:
    with pytest.raises(ConfigurationError, match="two RSA"):
        server_tls_context([pki.rsa, pki.rsa])


def test_settings_take_both_certificates_and_the_client_ca(pki: Pki) -> None:
    settings = load_settings(
        tls_cert=pki.rsa.cert_file,
        tls_key=pki.rsa.key_file,
        tls_cert_2=pki.ecdsa.cert_file,
        tls_key_2=pki.ecdsa.key_file,
        tls_client_ca=pki.charger_ca.cert_file,
    )
    assert settings.tls_chains == [
        (pki.rsa.cert_file, pki.rsa.key_file),
        (pki.ecdsa.cert_file, pki.ecdsa.key_file),
    ]
    with pytest.raises(ConfigurationError, match="EVACCESS_TLS_CERT_2"):
        load_settings(tls_cert=pki.rsa.cert_file, tls_key=pki.rsa.key_file, tls_cert_2=Path("x"))
    with pytest.raises(ConfigurationError, match="needs EVACCESS_TLS_CLIENT_CA"):
        load_settings(
            tls_cert=pki.rsa.cert_file, tls_key=pki.rsa.key_file, tls_require_client_cert=True
        )


# --- profile 3 -----------------------------------------------------------------------------


async def test_profile_3_client_certificate_needs_no_password(
    pki: Pki, tls_server: OcppServer
) -> None:
    context = client_context(pki, cert=pki.charger_cert("CP1"))
    ws = await _open(tls_server, context, password=False)
    await _heartbeat(ws)
    assert tls_server.stats()["accepted_by_certificate"] == 1


async def test_profile_3_refuses_a_certificate_of_another_charger(
    pki: Pki, tls_server: OcppServer, backend: InMemoryOcppBackend
) -> None:
    context = client_context(pki, cert=pki.charger_cert("CP2"))
    for password in (False, True):  # a valid password does not rescue a wrong certificate
        with pytest.raises(InvalidStatus) as caught:
            await _open(tls_server, context, "CP1", password=password)
        assert caught.value.response.status_code == 403
    stats = tls_server.stats()
    assert stats["refused_certificate_mismatch"] == 2
    assert stats["accepted"] == 0 and stats["calls_received"] == 0
    assert tls_server.sessions == {}


async def test_profile_3_refuses_an_unknown_charger(pki: Pki, tls_server: OcppServer) -> None:
    context = client_context(pki, cert=pki.charger_cert("CP404"))
    with pytest.raises(InvalidStatus) as caught:
        await _open(tls_server, context, "CP404", password=False)
    assert caught.value.response.status_code == 403


async def test_profile_3_refuses_an_untrusted_certificate_at_the_handshake(
    pki: Pki, tls_server: OcppServer
) -> None:
    for suite in (None, A00_FR_318_SUITES[0]):  # TLS 1.3 and TLS 1.2
        context = client_context(pki, suite=suite, cert=pki.charger_cert("CP1", trusted=False))
        with pytest.raises(REFUSED_AT_HANDSHAKE):
            await _open_and_read(tls_server, context)
    stats = tls_server.stats()
    assert stats["accepted"] == 0 and stats["accepted_by_certificate"] == 0


async def test_required_client_certificate_refuses_password_only_chargers(
    pki: Pki, backend: InMemoryOcppBackend, clock
) -> None:
    context = server_tls_context(
        [pki.rsa, pki.ecdsa], client_ca=pki.charger_ca.cert_file, require_client_cert=True
    )
    server = await _serve(backend, clock, context)
    try:
        with pytest.raises(REFUSED_AT_HANDSHAKE):
            await _open_and_read(server, client_context(pki))
        ws = await _open(server, client_context(pki, cert=pki.charger_cert("CP1")), password=False)
        await _heartbeat(ws)
    finally:
        await server.close()


async def test_the_database_backend_accepts_a_certificate_of_a_registered_charger(ctx) -> None:
    await build_world(ctx)
    backend = DbOcppBackend(ctx)
    assert (await backend.authenticate_certificate("WB-100001")).value == "accepted"
    assert (await backend.authenticate_certificate("NOPE-1")).value == "unknown_charger"
    assert backend.refused_auth == 1
