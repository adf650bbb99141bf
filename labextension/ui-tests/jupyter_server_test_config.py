"""Server configuration for the browser tests (Galata's test helpers).

Galata needs its helper extension and `window.jupyterapp`; everything else is on
start-server.sh's command line. Test-only: it turns off the server's protections.
"""

from jupyterlab.galata import configure_jupyter_server

configure_jupyter_server(c)  # noqa: F821 (`c` is the config object of jupyter)
