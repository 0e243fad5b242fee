"""The one rule for user and task names, shared by the parser, the services and the API schema."""
from __future__ import annotations

import re

# Anchored so it also works as a JSON-schema pattern; matched with fullmatch so a trailing newline never passes.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$"
NAME_RULE = "1-128 letters, digits, '_', '.', '@' or '-', starting with a letter or digit"


def is_valid_name(value: object) -> bool:
    return isinstance(value, str) and re.fullmatch(NAME_PATTERN, value) is not None
