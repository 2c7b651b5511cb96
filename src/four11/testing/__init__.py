"""Test harnesses that drive the real services (not imported by any service)."""
