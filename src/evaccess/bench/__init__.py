"""Benchmarks that print figures (``evaccess bench ...``); speed claims come from here."""
