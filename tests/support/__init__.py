"""The test support library.

- :mod:`.factories`: the standard settings and clients, people, an emptied database;
- :mod:`.servers`: start, poll and stop servers (``authserver serve``, the mock IdP,
  SkyPilot) and small JSON servers in a thread;
- :mod:`.flows`: the flow driver (code + PKCE, device, refresh, client credentials),
  over HTTP or a Flask test client.
"""
