"""`python -m vla_app.cli ...` is `vla ...`."""

import sys

from vla_app.cli import main

sys.exit(main())
