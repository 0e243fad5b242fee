"""localize: one frozen base model, a tiny adapter per user."""

import logging as _logging

# peft imports bitsandbytes whenever it is installed (the quant extra), and bitsandbytes then warns on every import
# on a CPU that lacks an optional 4-bit kernel package: noise for every LoRA save. Its errors still show.
_logging.getLogger("bitsandbytes").setLevel(_logging.ERROR)
