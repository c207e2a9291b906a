"""Built-in fashion plugins."""
