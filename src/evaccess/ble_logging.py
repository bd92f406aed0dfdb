"""What the Bluetooth adapters (the charger's peripheral, the phone's central) do to Bumble's
loggers before they start: its SMP debug lines print the passkey (the PIN in passkey mode)
and key material, so their DEBUG records are dropped whatever the logging level set."""

from __future__ import annotations

import logging

SECRET_DEBUG_LOGGERS = ("bumble.smp",)


def _drop_debug(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.INFO


def silence_secret_debug_logs() -> None:
    """Drop DEBUG records of loggers that print secrets."""
    for name in SECRET_DEBUG_LOGGERS:
        logger = logging.getLogger(name)
        if _drop_debug not in logger.filters:
            logger.addFilter(_drop_debug)
