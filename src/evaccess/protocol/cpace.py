"""CPace, the CFRG's balanced PAKE, cipher suite CPACE-RISTR255-SHA512.

Follows draft-irtf-cfrg-cpace-21 (23 April 2026): section 7 (protocol), 8.1 (generator
string), 8.3 (ristretto255 group object), appendix A (string functions). The initiator-
responder setting is used (transcript_ir): the initiator A always speaks first.

Pure and self-contained: no I/O, no knowledge of GATT frames. How evaccess feeds it (PRS,
CI, sid, ADa, ADb) and what it does with ISK is docs/ble-protocol.md section 5.2.

The ristretto255 group (RFC 9496) is libsodium's, through ``rbcl`` (a binding that ships
libsodium inside its wheel; PyNaCl has no ristretto255 functions). Three libsodium calls are
used: ``crypto_core_ristretto255_from_hash`` (the RFC 9496 element derivation from 64 bytes),
``crypto_scalarmult_ristretto255`` (decode, multiply, encode; it fails on an invalid
encoding and on an identity result, which is exactly G.scalar_mult_vfy returning G.I), and
nothing else: scalars are sampled here from the injected random source.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
from collections.abc import Callable
from enum import Enum

import rbcl

from evaccess.domain.errors import Conflict, InvalidInput

DSI = b"CPaceRistretto255"
"""G_Ristretto255.DSI (section 8.3)."""
DSI_ISK = DSI + b"_ISK"
"""G.DSI || b"_ISK", the first field of the ISK hash (section 7.2)."""
S_IN_BYTES = 128
"""H.s_in_bytes for SHA-512: the input block size (section 6.2)."""
POINT_BYTES = 32
"""G_Ristretto255.field_size_bytes: an encoded group element (Ya, Yb, K, g)."""
SCALAR_BYTES = 32
GROUP_SIZE_BITS = 252
"""G_Ristretto255.group_size_bits."""
GROUP_ORDER = 2**252 + 27742317777372353535851937790883648493
ISK_BYTES = 64
"""H.b_in_bytes for SHA-512."""
IDENTITY = bytes(POINT_BYTES)
"""G.I: the encoding of the neutral element."""

RandomBytes = Callable[[int], bytes]
"""n -> n uniformly random bytes (``secrets.token_bytes``, ``RandomSource.token_bytes``)."""


class Role(Enum):
    INITIATOR = "initiator"
    """A: sends Ya first (the phone)."""
    RESPONDER = "responder"
    """B: answers with Yb (the charger)."""


class InvalidPakeMessage(InvalidInput):
    """The peer's CPace message is not a valid ristretto255 encoding, or it is one that
    makes the shared point the neutral element (section 8.3.1): abort the exchange."""

    code = "pake_invalid_message"


# --- Appendix A.1: string utilities ----------------------------------------------------------


def leb128(n: int) -> bytes:
    """Unsigned LEB128: 7 bits a byte, least significant first, bit 7 = more follows."""
    if n < 0:
        raise ValueError("LEB128 encodes non-negative integers only")
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def prepend_len(data: bytes) -> bytes:
    """Appendix A.1.1: LEB128(len(data)) || data."""
    return leb128(len(data)) + data


def lv_cat(*parts: bytes) -> bytes:
    """Appendix A.1.3: the concatenation of prepend_len of each argument."""
    return b"".join(prepend_len(part) for part in parts)


def transcript_ir(ya: bytes, ada: bytes, yb: bytes, adb: bytes) -> bytes:
    """Appendix A.3.4: the initiator-responder transcript lv_cat(Ya,ADa) || lv_cat(Yb,ADb)."""
    return lv_cat(ya, ada) + lv_cat(yb, adb)


# --- Sections 8.1 and 8.3: the generator -----------------------------------------------------


def generator_string(dsi: bytes, prs: bytes, ci: bytes, sid: bytes, s_in_bytes: int) -> bytes:
    """Appendix A.2: lv_cat(DSI, PRS, zero_bytes(len_zpad), CI, sid), the zero padding
    making DSI and PRS fill the hash's first input block."""
    len_zpad = max(0, s_in_bytes - 1 - len(prepend_len(prs)) - len(prepend_len(dsi)))
    return lv_cat(dsi, prs, bytes(len_zpad), ci, sid)


def calculate_generator(prs: bytes, ci: bytes, sid: bytes) -> bytes:
    """G.calculate_generator (section 8.3): SHA-512 of the generator string (64 bytes, twice
    field_size_bytes) mapped by the ristretto255 element derivation. Returned encoded."""
    gen_str_hash = hashlib.sha512(generator_string(DSI, prs, ci, sid, S_IN_BYTES)).digest()
    return bytes(rbcl.crypto_core_ristretto255_from_hash(gen_str_hash))


# --- Section 8.3: scalars and scalar multiplication ------------------------------------------


def sample_scalar(random_bytes: RandomBytes) -> bytes:
    """G.sample_scalar (section 8.3, the RECOMMENDED way): 32 random bytes with the bits
    above group_size_bits cleared, read little-endian. A zero scalar (probability 2^-252)
    is drawn again: it would make our own message the neutral element."""
    while True:
        raw = bytearray(random_bytes(SCALAR_BYTES))
        if len(raw) != SCALAR_BYTES:
            raise ValueError("the random source returned the wrong number of bytes")
        raw[-1] &= (1 << (GROUP_SIZE_BITS % 8)) - 1  # keep bits 248..251 of the last byte
        if any(raw):
            return bytes(raw)


def scalar_mult_vfy(scalar: bytes, point: bytes) -> bytes:
    """G.scalar_mult_vfy (section 8.3): encode(y * decode(X)), or G.I if X does not decode
    (wrong length, non-canonical, not a ristretto255 encoding) or the product is the
    neutral element."""
    if len(scalar) != SCALAR_BYTES:
        raise ValueError("a scalar is 32 bytes")
    if len(point) != POINT_BYTES or point[-1] & 0x80:
        # RFC 9496 4.3.1: a 32-byte value >= p does not decode. libsodium 1.0.18 (the one rbcl
        # bundles) ignores the top bit, so it would accept Y with bit 255 set as Y itself.
        return IDENTITY
    try:
        return bytes(rbcl.crypto_scalarmult_ristretto255(bytes(scalar), bytes(point)))
    except RuntimeError:  # libsodium returned -1: invalid encoding or identity result
        return IDENTITY


def scalar_mult(scalar: bytes, generator: bytes) -> bytes:
    """G.scalar_mult (section 8.3) on our own, valid generator: encode(y * g)."""
    product = scalar_mult_vfy(scalar, generator)
    if product == IDENTITY:
        raise ValueError("scalar multiplication of a generator gave the neutral element")
    return product


# --- Section 7.2: the intermediate session key -----------------------------------------------


def isk(sid: bytes, k: bytes, transcript: bytes) -> bytes:
    """ISK = H.hash(lv_cat(G.DSI || b"_ISK", sid, K) || transcript(Ya,ADa,Yb,ADb))."""
    return hashlib.sha512(lv_cat(DSI_ISK, sid, k) + transcript).digest()


def sid_output(transcript: bytes) -> bytes:
    """Section 10.6: a public session id for runs that had no sid input."""
    return hashlib.sha512(b"CPaceSidOutput" + transcript).digest()


class CPaceSession:
    """One party's CPace run (initiator-responder setting).

    ``message()`` is this party's share (Ya for the initiator, Yb for the responder; 32
    bytes), sent together with this party's associated data ``ad``. ``finish`` takes the
    peer's share and associated data and returns ISK (64 bytes); it raises
    InvalidPakeMessage for a share that scalar_mult_vfy maps to G.I (the MUST-abort case).
    The secret scalar is used for exactly one ``finish`` and then dropped (section 10.9).
    """

    def __init__(
        self,
        *,
        prs: bytes,
        ci: bytes,
        sid: bytes,
        role: Role,
        ad: bytes = b"",
        random_bytes: RandomBytes,
    ) -> None:
        self.role = role
        self.sid = sid
        self.ad = ad
        self._scalar: bytes | None = sample_scalar(random_bytes)
        self._message = scalar_mult(self._scalar, calculate_generator(prs, ci, sid))

    def __repr__(self) -> str:  # never the scalar
        return f"CPaceSession(role={self.role.value})"

    def message(self) -> bytes:
        return self._message

    def transcript(self, peer_message: bytes, peer_ad: bytes) -> bytes:
        """transcript_ir with Ya/ADa from the initiator and Yb/ADb from the responder."""
        if self.role is Role.INITIATOR:
            return transcript_ir(self._message, self.ad, peer_message, peer_ad)
        return transcript_ir(peer_message, peer_ad, self._message, self.ad)

    def finish(self, peer_message: bytes, peer_ad: bytes = b"") -> bytes:
        scalar, self._scalar = self._scalar, None
        if scalar is None:
            raise Conflict("this CPace session has already finished", code="pake_finished")
        k = scalar_mult_vfy(scalar, peer_message)
        if k == IDENTITY:
            raise InvalidPakeMessage("invalid PAKE message")
        return isk(self.sid, k, self.transcript(peer_message, peer_ad))


def _drop_rbcl_temporary_copy() -> None:
    """rbcl loads its bundled libsodium by writing it to a temporary file (2.7 MB) that it
    never deletes. Once loaded the file is not needed (the mapping stays valid): remove it,
    so that a charger restarting for months does not fill its /tmp."""
    path = getattr(sys.modules.get("rbcl._sodium"), "lib_path", None)
    if isinstance(path, str):
        with contextlib.suppress(OSError):
            os.unlink(path)


_drop_rbcl_temporary_copy()
