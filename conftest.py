"""Root pytest configuration: makes the real-environment fixtures available everywhere."""

pytest_plugins = ["testenv.fixtures"]
