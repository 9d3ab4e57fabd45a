"""pytest configuration: nothing but markers live in pyproject.toml; tests/ is a package (tests.support)."""
