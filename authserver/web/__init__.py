"""Thin blueprints: they adapt HTTP to the protocol layer and render what it returns."""
