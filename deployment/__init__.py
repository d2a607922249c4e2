"""Publishing CI governance into an existing Azure Automation account.

``desired`` builds what should exist, ``observe`` reads what exists, ``plan`` compares the two into a
list of actions (pure, no I/O), ``apply`` performs them with azure-mgmt-automation and proves them with
one self-check job per runbook before the runbooks switch, ``packaging`` makes the Python 3.10 packages
importable by Automation, ``secrets`` keeps the secret settings in Key Vault, ``roles`` prints the access
the account's managed identity needs, and ``cli`` ties them together for ``publish.py``.
"""
