"""``python -m dkmeans``: the command line (see ``dkmeans --help``)."""

from dkmeans.app.cli import entry

entry()
