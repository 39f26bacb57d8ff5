"""Delivery guarantees: offline storage, receipts, markers, carbons."""
