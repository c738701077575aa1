"""`python -m autan` (and `torchrun -m autan serve ...`) runs the command line."""

import sys

from autan.cli import main

if __name__ == "__main__":
    sys.exit(main())
