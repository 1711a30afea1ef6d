"""`python -m gorun` is the `gorun` command."""

import sys

from gorun.cli import main

sys.exit(main())
