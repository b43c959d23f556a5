"""authserver as a bare WSGI application, for ``bench/run.py --stack sync|granian``.

``authserver serve`` runs gunicorn's gthread worker (with a deadline for each request
to arrive); the bench starts other servers on this module to compare serving stacks
(issue 14's goal 3). The config file is ``BENCH_AUTHSERVER_CONFIG``.
"""

from __future__ import annotations

import os

from authserver.app import create_app
from authserver.settings import load_settings

app = create_app(load_settings(os.environ["BENCH_AUTHSERVER_CONFIG"]))
