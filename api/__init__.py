"""REST API (JWT) and WebSocket of live events."""
