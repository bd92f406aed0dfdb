"""evaccess: security for EV chargers (Bluetooth PINs, keypad PINs, access and ownership)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("evaccess")  # one source: pyproject.toml, as installed
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"
