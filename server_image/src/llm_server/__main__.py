"""`python -m llm_server` is `llm-server`."""

import sys

from llm_server.cli import main

sys.exit(main())
