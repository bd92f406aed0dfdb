"""Wire contracts written once and used by both sides (OCPP components, Bluetooth service)."""
