"""The phone app's Bluetooth LE half: pairing with a charger's PIN, credentials,
configuration (docs/ble-protocol.md)."""
