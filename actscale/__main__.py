import sys

from actscale.cli import main

sys.exit(main())
