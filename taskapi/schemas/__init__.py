"""Pydantic models for request bodies, query strings and public views."""
