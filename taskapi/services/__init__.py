"""Business logic as plain typed functions; no Flask request objects in here."""
