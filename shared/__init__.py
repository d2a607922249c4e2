"""CI governance: the package the runbooks import."""
