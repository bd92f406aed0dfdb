"""`evaccess app`: the phone app as a command line (server over HTTP, charger over BLE)."""
