"""Placeholder: built under issue 3."""
