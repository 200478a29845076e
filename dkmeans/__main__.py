"""``python -m dkmeans``: the command line (see ``dkmeans --help``)."""

import sys

from dkmeans.app.cli import main

sys.exit(main())
