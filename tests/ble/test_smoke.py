from evaccess.app.ble import pairing
from evaccess.protocol import ble_access as proto
from tests.ble.conftest import PIN, SERIAL, Rig


async def test_pair_then_reconnect(rig: Rig) -> None:
    store = rig.phone_store()
    result = await pairing.pair(
        transport=rig.phone_transport, serial=SERIAL, pin=PIN, store=store, rng=rig.rng
    )
    assert result.pin_required
    settings = await pairing.configure(
        transport=rig.phone_transport,
        serial=SERIAL,
        change=pairing.ConfigChange(current_limit_a=20),
        store=store,
        rng=rig.rng,
    )
    assert settings["current_limit_a"] == 20
