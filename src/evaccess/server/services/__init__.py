"""Use cases: each public coroutine is one unit of work that entry points (REST routes, OCPP
handlers, CLI commands) call. Services raise ``EvAccessError``s, never HTTP errors."""
