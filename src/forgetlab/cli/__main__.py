"""`python -m forgetlab.cli`: what grid points run in their child processes."""

import sys

from . import main

sys.exit(main())
