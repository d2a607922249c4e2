"""The built-in sandbox: a realistic fake fleet behind the fake Azure control plane, and the real
runbooks run against it. ``python -m sandbox --help``."""
