"""``python -m rvoslib`` runs the ``rvos`` command."""

import sys

from rvoslib.cli import main

if __name__ == "__main__":
    sys.exit(main())
