"""Pure rules with no I/O: PIN policy, PIN generation and validation, throttles, permissions."""
