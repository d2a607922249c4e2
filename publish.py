"""Deploy CI governance into an existing Azure Automation account.

    python publish.py --subscription S --resource-group RG --automation-account A --settings settings.json [--dry-run]

See ``python publish.py --help`` and deployment/ for the design (packaging: deployment/packaging.py).
"""

import sys

from deployment.cli import main

if __name__ == "__main__":
    sys.exit(main())
