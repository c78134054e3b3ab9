"""``python -m ladtrain``: see :mod:`ladtrain.cli`."""

import sys

from ladtrain.cli import main

if __name__ == "__main__":
    sys.exit(main())
