"""Certificates made by the tests with ``cryptography``: a CA, server chains of both key
types for 127.0.0.1, and charger client certificates (CN = the charger's serial)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from evaccess.server.ocpp.tls import CertificateChain

START = datetime(2025, 1, 1, tzinfo=UTC)

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def _key(kind: str) -> PrivateKey:
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(key: PrivateKey, path: Path) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


@dataclass
class Authority:
    name: x509.Name
    key: PrivateKey
    cert: x509.Certificate
    cert_file: Path

    @classmethod
    def create(cls, directory: Path, common_name: str) -> Authority:
        directory.mkdir(parents=True, exist_ok=True)
        key = _key("ec")
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(START)
            .not_valid_after(START + timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
        cert_file = directory / f"{common_name.replace(' ', '_')}.pem"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return cls(name=name, key=key, cert=cert, cert_file=cert_file)

    def issue(
        self, directory: Path, common_name: str, *, kind: str, server: bool
    ) -> CertificateChain:
        key = _key(kind)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(START)
            .not_valid_after(START + timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            )
        cert = builder.sign(self.key, hashes.SHA256())
        stem = f"{common_name}-{kind}".replace(" ", "_")
        cert_file = directory / f"{stem}.pem"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return CertificateChain(
            cert_file=cert_file, key_file=_write_key(key, directory / f"{stem}.key")
        )


@dataclass
class Pki:
    """The CSMS's CA and its two server chains; the chargers' CA; an untrusted CA."""

    server_ca: Authority
    rsa: CertificateChain
    ecdsa: CertificateChain
    charger_ca: Authority
    rogue_ca: Authority
    directory: Path

    @classmethod
    def create(cls, directory: Path) -> Pki:
        server_ca = Authority.create(directory, "evaccess test CSMS CA")
        return cls(
            server_ca=server_ca,
            rsa=server_ca.issue(directory, "csms", kind="rsa", server=True),
            ecdsa=server_ca.issue(directory, "csms", kind="ec", server=True),
            charger_ca=Authority.create(directory, "evaccess test charger CA"),
            rogue_ca=Authority.create(directory, "someone else CA"),
            directory=directory,
        )

    def charger_cert(self, serial: str, *, trusted: bool = True) -> CertificateChain:
        ca = self.charger_ca if trusted else self.rogue_ca
        return ca.issue(self.directory, serial, kind="ec", server=False)
