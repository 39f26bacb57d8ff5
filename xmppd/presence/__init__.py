"""Roster, subscriptions, presence broadcast, last activity, blocking."""
