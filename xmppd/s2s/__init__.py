"""Server-to-server streams (federation)."""
