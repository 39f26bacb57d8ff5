"""Test helpers: real server processes and a raw XML client."""
