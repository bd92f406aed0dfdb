"""TLS for the OCPP endpoint: security profiles 2 and 3 (OCPP 2.0.1 Part 2 A00).

Profile 2: Basic Auth inside TLS 1.2 or newer, the charger verifying the CSMS certificate.
A00.FR.318 requires the CSMS to support four TLS 1.2 cipher suites::

    TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256   ECDHE-ECDSA-AES128-GCM-SHA256
    TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384   ECDHE-ECDSA-AES256-GCM-SHA384
    TLS_RSA_WITH_AES_128_GCM_SHA256           AES128-GCM-SHA256
    TLS_RSA_WITH_AES_256_GCM_SHA384           AES256-GCM-SHA384

The ECDSA suites need an ECDSA certificate and the RSA ones an RSA certificate, so the
context holds one chain of each (OpenSSL keeps one chain per key type: ``load_cert_chain``
twice) and the cipher string names them; Python's default string has no static-RSA suite.
ECDHE-RSA with AES-GCM is offered as well, before static RSA (forward secrecy whenever the
charger can). TLS 1.3 suites are OpenSSL's defaults.

Profile 3: the charger presents a client certificate, verified against ``client_ca``; its
subject CN must be the charger's identity (the serial in the URL, A00.FR.304 ... 306),
checked by the endpoint before the upgrade (``server.py``), and no Basic Auth is needed.
An untrusted certificate fails the TLS handshake itself.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from evaccess.domain.errors import ConfigurationError

log = logging.getLogger("evaccess.server.ocpp")

A00_FR_318_SUITES: Final = (
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "AES128-GCM-SHA256",
    "AES256-GCM-SHA384",
)
"""OpenSSL names of the four suites A00.FR.318 requires (IANA names in the module doc)."""

TLS12_CIPHERS: Final = ":".join(
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "AES128-GCM-SHA256",
        "AES256-GCM-SHA384",
    )
)


@dataclass(frozen=True, kw_only=True, slots=True)
class CertificateChain:
    """A PEM certificate chain (leaf first) and its unencrypted PEM private key."""

    cert_file: Path
    key_file: Path


def _key_type(chain: CertificateChain) -> str:
    try:
        leaf = x509.load_pem_x509_certificate(chain.cert_file.read_bytes())
    except (OSError, ValueError):
        raise ConfigurationError(
            f"TLS certificate {chain.cert_file}: not a readable PEM certificate"
        ) from None
    key = leaf.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return "RSA"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "ECDSA"
    raise ConfigurationError(f"TLS certificate {chain.cert_file}: neither RSA nor ECDSA")


def server_tls_context(
    chains: Sequence[CertificateChain],
    *,
    client_ca: Path | None = None,
    require_client_cert: bool = False,
) -> ssl.SSLContext:
    """The endpoint's TLS context: one or two chains (at most one RSA, one ECDSA), TLS 1.2
    or newer; with ``client_ca``, client certificates are asked for and verified (profile
    3), and refused at the handshake when missing if ``require_client_cert``."""
    if not chains:
        raise ConfigurationError("TLS needs at least one certificate")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(TLS12_CIPHERS)
    seen: dict[str, Path] = {}
    for chain in chains:
        kind = _key_type(chain)
        if kind in seen:
            raise ConfigurationError(
                f"two {kind} certificates ({seen[kind]}, {chain.cert_file}): give one RSA "
                "and one ECDSA certificate"
            )
        seen[kind] = chain.cert_file
        try:
            context.load_cert_chain(chain.cert_file, chain.key_file)
        except (OSError, ssl.SSLError):
            raise ConfigurationError(
                f"TLS certificate {chain.cert_file}: cannot load it with key {chain.key_file}"
            ) from None
    if len(seen) < 2:
        missing = "ECDSA" if "RSA" in seen else "RSA"
        log.warning(
            "OCPP TLS: no %s certificate, so 2 of the 4 cipher suites OCPP requires "
            "(2.0.1 A00.FR.318) are not offered",
            missing,
        )
    if client_ca is not None:
        try:
            context.load_verify_locations(cafile=client_ca)
        except (OSError, ssl.SSLError):
            raise ConfigurationError(f"client CA {client_ca}: not a readable PEM file") from None
        context.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    elif require_client_cert:
        raise ConfigurationError("requiring client certificates needs a client CA")
    return context


def peer_common_names(peercert: dict[str, Any] | None) -> list[str]:
    """The subject CNs of a verified peer certificate (``SSLObject.getpeercert()``)."""
    if not peercert:
        return []
    names: list[str] = []
    for rdn in peercert.get("subject", ()):
        for attribute, value in rdn:
            if attribute == "commonName":
                names.append(str(value))
    return names
