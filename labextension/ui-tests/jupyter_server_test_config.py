"""Server configuration for the browser tests (Galata's test helpers).

Galata needs its helper extension and `window.jupyterapp`; everything else is on
start-server.sh's command line. Test-only: it turns off the server's protections.
"""

from jupyterlab.galata import configure_jupyter_server

configure_jupyter_server(c)  # noqa: F821 (`c` is the config object of jupyter)

# SmolLM2-135M often repeats itself up to the token limit: with the default 400 tokens
# one explanation took minutes on a loaded 2-core box, and the conversation specs need
# several in a row. 128 tokens still streams for seconds, long enough for the Stop test.
c.CopilotApp.explain_max_tokens = 128  # noqa: F821
