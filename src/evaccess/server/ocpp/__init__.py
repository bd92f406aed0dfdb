"""The OCPP-J endpoint: WebSocket sessions for OCPP 2.0.1 and 1.6J chargers."""
