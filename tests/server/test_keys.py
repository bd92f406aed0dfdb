"""Keys outside the database, the vault's binding of ciphertexts, and key rotation."""

from __future__ import annotations

import base64
import json
import os
import stat

import pytest

from evaccess.domain.errors import ConfigurationError, IntegrityFailure
from evaccess.server.keys import EnvKeyProvider, FileKeyProvider
from evaccess.server.services import rotation
from evaccess.server.vault import PinVault, Sealed
from tests.server.support import build_world, client_for, confirm_pin_push


def test_key_files_are_created_private(tmp_path, rng):
    provider = FileKeyProvider(tmp_path / "keys", rng)
    ring = provider.load()
    assert ring.vault_version == 1
    assert stat.S_IMODE(os.stat(tmp_path / "keys").st_mode) == 0o700
    for name in ("vault-v1.key", "audit.key", "keypad-pepper.key"):
        assert stat.S_IMODE(os.stat(tmp_path / "keys" / name).st_mode) == 0o600
    os.chmod(tmp_path / "keys" / "audit.key", 0o644)
    with pytest.raises(ConfigurationError, match="readable by others"):
        FileKeyProvider(tmp_path / "keys", rng).load()


def test_env_keys_are_validated(rng):
    good = base64.b64encode(bytes(32)).decode()
    provider = EnvKeyProvider(
        json.dumps({"vault": {"1": good, "2": good}, "audit": good, "keypad_pepper": good})
    )
    assert provider.load().vault_version == 2
    with pytest.raises(ConfigurationError):
        EnvKeyProvider('{"vault": {}}')
    with pytest.raises(ConfigurationError):
        EnvKeyProvider(
            json.dumps({"vault": {"1": "c2hvcnQ="}, "audit": good, "keypad_pepper": good})
        )


def test_vault_binds_charger_and_key_version(tmp_path, rng):
    vault = PinVault(FileKeyProvider(tmp_path / "keys", rng), rng)
    sealed = vault.seal("charger-a", "739104")
    assert vault.open("charger-a", sealed) == "739104"
    assert b"739104" not in sealed.ciphertext
    assert vault.seal("charger-a", "739104").ciphertext != sealed.ciphertext  # fresh nonce
    with pytest.raises(IntegrityFailure):
        vault.open("charger-b", sealed)
    with pytest.raises(IntegrityFailure):
        vault.open("charger-a", Sealed(ciphertext=sealed.ciphertext, key_version=2))


async def test_rotation_reencrypts_while_reveals_keep_working(ctx, canaries, rng):
    world = await build_world(ctx)
    pins = {}
    for key in ("wallbox", "zaptec"):
        push = await confirm_pin_push(ctx, world.chargers[key].serial)
        pins[key] = push.pin
        canaries.add(push.pin)
    version = ctx.keys.add_vault_key(rng)
    assert version == 2
    assert await rotation.rotate_keys(ctx) == 2
    assert await rotation.rotate_keys(ctx) == 0
    async with client_for(ctx) as client:
        for key, pin in pins.items():
            response = await client.post(
                f"/api/chargers/{world.chargers[key].id}/bluetooth-pin/reveal",
                headers=await world.headers("owner"),
            )
            assert response.json()["pin"] == pin
