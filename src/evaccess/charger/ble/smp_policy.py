"""A policy hook around Bumble's SMP responder (``bumble.smp.Session``, bumble pinned at
0.0.236 in pyproject.toml because this subclasses an internal class).

Bumble has no "Secure Connections only" or "MITM required" switch and accepts a peer
public key equal to its own (the CVE-2020-26558 reflection pattern; it also reuses one ECDH
key pair for all pairings). This hook, installed as the SMP manager's ``session_proxy``,
gives the charger those rules (docs/ble-protocol.md section 9):

- legacy pairing (no SC bit) is refused in every mode (Core Vol 3 Part H 2.3.5.6.1);
- in ``passkey`` mode, anything but LE SC Passkey Entry with MITM is refused, so Just Works
  (and Numeric Comparison, which the charger cannot display) never happens;
- a peer public key equal to the charger's own is refused (CVE-2020-26558 pattern) and
  every pairing uses a fresh ECDH key pair;
- during a lockout a pairing request is answered REPEATED_ATTEMPTS (Part H 3.5.5).
"""

from __future__ import annotations

from typing import Any, Protocol

from bumble import smp
from bumble.device import Connection

# Initiator IO capabilities that give Passkey Entry against a DISPLAY_ONLY responder
# (Core Vol 3 Part H Table 2.8).
PASSKEY_INITIATOR_CAPABILITIES = frozenset(
    {smp.IoCapability.KEYBOARD_ONLY, smp.IoCapability.KEYBOARD_DISPLAY}
)


class SmpPolicy(Protocol):
    @property
    def passkey_mode(self) -> bool: ...

    def passkey_refusal(self) -> smp.ErrorCode | None:
        """``REPEATED_ATTEMPTS`` while PIN entry is locked or disabled, else ``None``."""

    def passkey_attempt_started(self, connection: Connection) -> None:
        """A Passkey Entry pairing got past the policy: it counts as one guess."""

    def pairing_refused(self, connection: Connection, reason: str) -> None:
        """Log-worthy refusal (no secret in ``reason``)."""


def request_refusal(
    command: smp.SMP_Pairing_Request_Command, *, passkey_mode: bool
) -> tuple[smp.ErrorCode, str] | None:
    """Why a Pairing Request must be refused under the charger's rules, if it must."""
    if not command.auth_req & smp.AuthReq.SC:
        return smp.ErrorCode.AUTHENTICATION_REQUIREMENTS, "legacy pairing"
    if passkey_mode:
        if not command.auth_req & smp.AuthReq.MITM:
            return smp.ErrorCode.AUTHENTICATION_REQUIREMENTS, "no MITM protection (Just Works)"
        if command.io_capability not in PASSKEY_INITIATOR_CAPABILITIES:
            return smp.ErrorCode.AUTHENTICATION_REQUIREMENTS, "IO capabilities give Just Works"
        if command.oob_data_flag:
            return smp.ErrorCode.AUTHENTICATION_REQUIREMENTS, "OOB pairing"
    return None


def policy_session(policy: SmpPolicy) -> type[smp.Session]:
    """An ``smp.Session`` subclass enforcing ``policy`` (installed as ``session_proxy``)."""

    class PolicySession(smp.Session):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            if self.pairing_config.oob is None:
                self.ecc_key = type(
                    self.ecc_key
                ).generate()  # a fresh key pair per pairing: never reuse one

        def on_smp_pairing_request_command(self, command: smp.SMP_Pairing_Request_Command) -> None:
            if policy.passkey_mode and (code := policy.passkey_refusal()) is not None:
                policy.pairing_refused(self.connection, "PIN entry locked")
                self.send_pairing_failed(code)
                return
            refusal = request_refusal(command, passkey_mode=policy.passkey_mode)
            if refusal is not None:
                code, reason = refusal
                policy.pairing_refused(self.connection, reason)
                self.send_pairing_failed(code)
                return
            if policy.passkey_mode:
                policy.passkey_attempt_started(self.connection)
            super().on_smp_pairing_request_command(command)

        def on_smp_pairing_public_key_command(
            self, command: smp.SMP_Pairing_Public_Key_Command
        ) -> None:
            own_x = self.ecc_key.x[::-1]
            if command.public_key_x == own_x:
                policy.pairing_refused(self.connection, "reflected public key")
                self.send_pairing_failed(smp.ErrorCode.DHKEY_CHECK_FAILED)
                return
            super().on_smp_pairing_public_key_command(command)

    return PolicySession
