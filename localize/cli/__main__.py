"""``python -m localize.cli``: the same app as the ``localize`` script."""
from __future__ import annotations

import sys

from localize.cli import app

sys.exit(app())
