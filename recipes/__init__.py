"""Recipes bundled with fashion (YAML)."""
