"""Multi-user chat (XEP-0045)."""
