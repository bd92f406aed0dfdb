"""evaccess: security for EV chargers (Bluetooth PINs, keypad PINs, access and ownership)."""

__version__ = "0.1.0"
