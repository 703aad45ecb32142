pytest_plugins = ("fixtures.neon_fixtures",)
