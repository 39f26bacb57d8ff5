"""The HTTP server: WebSocket, BOSH, upload, host-meta, admin."""
