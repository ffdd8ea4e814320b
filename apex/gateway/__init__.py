"""The WebSocket gateway: authenticated connections bound to sessions, agent streams."""
