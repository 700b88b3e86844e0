"""``python -m everos``: the ``everos`` command (see ``everos.cli``)."""

import sys

from everos.cli import main

if __name__ == "__main__":
    sys.exit(main())
