"""Shared pytest configuration. Service fixtures live in tests/fixtures/<service>.py and are
imported by the conftest.py of the test directory that uses them."""
