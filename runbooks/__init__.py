"""Azure Automation runbooks. Each file is uploaded on its own; this file only lets the tests and
the sandbox import them as modules."""
