"""The benchmark's code paths run (figures come from `evaccess bench ble`, not from here)."""

from evaccess.bench.ble import _measure


async def test_bench_measures_every_path() -> None:
    pake = await _measure("pake", runs=2, phases=True)
    passkey = await _measure("passkey", runs=2, phases=False)
    assert {"pair", "reconnect", "phase_cpace", "reconnect_connect"} <= set(pake)
    assert set(passkey) == {"passkey_pair"}
    assert all(len(samples) == 2 for samples in (*pake.values(), *passkey.values()))
