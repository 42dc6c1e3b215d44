"""Durable state in sqlite3: the one door to the database file."""
