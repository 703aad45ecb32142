pytest_plugins = ("fixtures.neon_fixtures", "fixtures.s3")
