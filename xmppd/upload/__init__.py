"""XEP-0363 HTTP file upload."""
