"""`evaccess charger`: a charger's firmware (OCPP client, Bluetooth LE peripheral, keypad)."""
