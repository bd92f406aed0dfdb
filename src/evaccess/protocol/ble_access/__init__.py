"""The evaccess Access Service: how a phone proves the charger's Bluetooth PIN (or a
credential it got earlier) and then reads and writes the charger's settings over GATT.

Both sides of the contract live here, pure (no Bumble, no I/O), one module per part of the
specification: ``gatt`` (section 2), ``frames`` (3, 4, 6), ``crypto`` (5, 5.5), ``settings``
(7), ``charger`` and ``phone`` (the two sides of 5.1-5.4, and 8). The UUIDs, the frame
format, the CPace exchange with key confirmation, the per-phone credential and its
challenge-response, the sealed configuration values and the error codes. The byte-level
specification is docs/ble-protocol.md; section numbers below refer to it.

Cryptography: CPace (CPACE-RISTR255-SHA512 of draft-irtf-cfrg-cpace-21, in
``evaccess.protocol.cpace``; phone = initiator, charger = responder), HKDF-SHA256 (RFC 5869), HMAC-SHA256 (RFC 2104), AES-128-GCM
(NIST SP 800-38D).
"""

from __future__ import annotations

from evaccess.protocol.ble_access.charger import ChargerContext as ChargerContext
from evaccess.protocol.ble_access.charger import ChargerLink as ChargerLink
from evaccess.protocol.ble_access.charger import StoredCredential as StoredCredential
from evaccess.protocol.ble_access.charger import pairing_state as pairing_state
from evaccess.protocol.ble_access.crypto import SECRET_BYTES as SECRET_BYTES
from evaccess.protocol.ble_access.crypto import Direction as Direction
from evaccess.protocol.ble_access.crypto import SessionCipher as SessionCipher
from evaccess.protocol.ble_access.crypto import derive_keys as derive_keys
from evaccess.protocol.ble_access.frames import NONCE_BYTES as NONCE_BYTES
from evaccess.protocol.ble_access.frames import PHONE_ID_BYTES as PHONE_ID_BYTES
from evaccess.protocol.ble_access.frames import SUPPORTED_VERSIONS as SUPPORTED_VERSIONS
from evaccess.protocol.ble_access.frames import ChargerInfo as ChargerInfo
from evaccess.protocol.ble_access.frames import ErrorCode as ErrorCode
from evaccess.protocol.ble_access.frames import Frame as Frame
from evaccess.protocol.ble_access.frames import MessageType as MessageType
from evaccess.protocol.ble_access.frames import PairingState as PairingState
from evaccess.protocol.ble_access.frames import PinMode as PinMode
from evaccess.protocol.ble_access.frames import ProtocolViolation as ProtocolViolation
from evaccess.protocol.ble_access.frames import Tag as Tag
from evaccess.protocol.ble_access.frames import WrongPin as WrongPin
from evaccess.protocol.ble_access.frames import decode as decode
from evaccess.protocol.ble_access.frames import encode as encode
from evaccess.protocol.ble_access.frames import error_frame as error_frame
from evaccess.protocol.ble_access.frames import error_from_frame as error_from_frame
from evaccess.protocol.ble_access.frames import expect_reply as expect_reply
from evaccess.protocol.ble_access.frames import negotiate_version as negotiate_version
from evaccess.protocol.ble_access.frames import wrong_pin_frame as wrong_pin_frame
from evaccess.protocol.ble_access.gatt import ACCESS_UUID as ACCESS_UUID
from evaccess.protocol.ble_access.gatt import CHARACTERISTICS as CHARACTERISTICS
from evaccess.protocol.ble_access.gatt import CONFIG_UUIDS as CONFIG_UUIDS
from evaccess.protocol.ble_access.gatt import CURRENT_LIMIT_UUID as CURRENT_LIMIT_UUID
from evaccess.protocol.ble_access.gatt import FIRMWARE_UPDATE_UUID as FIRMWARE_UPDATE_UUID
from evaccess.protocol.ble_access.gatt import INFO_UUID as INFO_UUID
from evaccess.protocol.ble_access.gatt import PIN_UUID as PIN_UUID
from evaccess.protocol.ble_access.gatt import SERVICE_UUID as SERVICE_UUID
from evaccess.protocol.ble_access.gatt import WIFI_UUID as WIFI_UUID
from evaccess.protocol.ble_access.gatt import CharacteristicSpec as CharacteristicSpec
from evaccess.protocol.ble_access.gatt import Property as Property
from evaccess.protocol.ble_access.gatt import advertised_name as advertised_name
from evaccess.protocol.ble_access.phone import PhoneAuth as PhoneAuth
from evaccess.protocol.ble_access.phone import PhonePake as PhonePake
from evaccess.protocol.ble_access.phone import forget_request as forget_request
from evaccess.protocol.ble_access.settings import ATT_ERRORS as ATT_ERRORS
from evaccess.protocol.ble_access.settings import AttErrorCode as AttErrorCode
from evaccess.protocol.ble_access.settings import att_code as att_code
from evaccess.protocol.ble_access.settings import att_exception as att_exception
from evaccess.protocol.ble_access.settings import check_current_limit as check_current_limit
from evaccess.protocol.ble_access.settings import check_firmware_url as check_firmware_url
from evaccess.protocol.ble_access.settings import check_wifi as check_wifi
from evaccess.protocol.ble_access.settings import open_json as open_json
from evaccess.protocol.ble_access.settings import seal_json as seal_json
