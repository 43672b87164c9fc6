import sys

from actscale.cli import run

sys.exit(run())
