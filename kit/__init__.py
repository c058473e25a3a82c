"""Minsheng service kit: the runtime every service shares (not contracts; those live in `schema`)."""

import sys

# httpx imports its command-line client when `click` and `rich` are installed (a development environment
# has them for other tools): 3.4 MB resident in every process, for a command no service runs. With the
# module marked absent, httpx defines its stub `main` instead, as in the images, which lack `rich`.
sys.modules.setdefault("httpx._main", None)
