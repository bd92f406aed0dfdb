"""evaccess's custom OCPP vocabulary, shared by the server and the charger (docs/ocpp.md).

OCPP 2.0.1 lets a CSMS configure vendor components through SetVariables (B05) and lets a
charger report vendor security events (A04, SecurityEventNotification ``type`` is a free
string). OCPP 1.6J has no device model: the same settings travel as configuration keys
(ChangeConfiguration) and events as DataTransfer. The names live here, once.
"""

from __future__ import annotations

from enum import StrEnum

SUBPROTOCOLS = ("ocpp2.0.1", "ocpp1.6")

VENDOR_ID = "org.evaccess"
"""DataTransfer vendorId for evaccess messages (1.6J events, charger-side PIN change)."""

BLUETOOTH_COMPONENT = "EvAccessBluetoothCtrlr"
"""OCPP 2.0.1 custom component holding the Bluetooth access settings."""


class BluetoothVariable(StrEnum):
    """Variables of ``BLUETOOTH_COMPONENT``. ``PIN`` is WriteOnly: GetVariables never returns it."""

    PIN = "Pin"
    PIN_REQUIRED = "PinRequired"
    PIN_CHANGEABLE = "PinChangeable"
    PIN_PAIRING_ENABLED = "PinPairingEnabled"
    REVOKE_CREDENTIALS = "RevokeCredentials"
    """Write ``*`` to forget every phone credential, or one phone id to forget that phone."""


WRITE_ONLY_VARIABLES = frozenset({BluetoothVariable.PIN})

# OCPP 1.6J configuration keys carrying the same settings (ChangeConfiguration).
V16_CONFIGURATION_KEYS: dict[BluetoothVariable, str] = {
    variable: f"EvAccessBluetooth{variable.value}" for variable in BluetoothVariable
}


class SecurityEventType(StrEnum):
    """Custom SecurityEventNotification types (no standard one covers a PIN lockout)."""

    KEYPAD_LOCKOUT = "evaccess.KeypadLockout"
    BLUETOOTH_PIN_LOCKOUT = "evaccess.BluetoothPinLockout"
    BLUETOOTH_PIN_PAIRING_DISABLED = "evaccess.BluetoothPinPairingDisabled"
    BLUETOOTH_PIN_CHANGED = "evaccess.BluetoothPinChanged"
    BLUETOOTH_CREDENTIAL_REVOKED = "evaccess.BluetoothCredentialRevoked"
    BLUETOOTH_CREDENTIAL_ISSUED = "evaccess.BluetoothCredentialIssued"
    """A phone proved the PIN and got a credential: techInfo ``phone_id=<hex>`` (an id, never
    the secret), so that the owner can see the phone and make the charger forget it."""


class DataTransferMessage(StrEnum):
    """``messageId`` values under ``VENDOR_ID``."""

    BLUETOOTH_PIN_CHANGED = "BluetoothPinChanged"
    """Charger -> server: a phone changed the PIN on the charger. data: {"pin": "NNNNNN"}."""
    CONFIGURATION_CHANGED = "ConfigurationChanged"
    """Charger -> server: non-secret settings a phone changed. data: {"key": "value", ...}."""
    SECURITY_EVENT = "SecurityEvent"
    """Charger -> server (1.6J only): data: {"type": ..., "timestamp": ..., "techInfo": ...}."""


KEYCODE_TOKEN_TYPE = "KeyCode"
"""OCPP 2.0.1 IdTokenEnumType for a PIN typed on the charger's keypad (use case C04)."""

AUTH_CTRLR_COMPONENT = "AuthCtrlr"
"""OCPP 2.0.1 standard component of the authorization settings (Part 2, Referenced Components)."""
MASTER_PASS_GROUP_VARIABLE = "MasterPassGroupId"
"""``AuthCtrlr.MasterPassGroupId`` (C16): a token of this group may stop any transaction and
start none. 1.6J has no such key (docs/ocpp.md)."""
