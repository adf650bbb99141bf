"""jupyter-copilot: a local, frugal, open coding assistant for JupyterLab.

Extension points are declared here so that `jupyter server` finds the server
extension and JupyterLab finds the prebuilt labextension shipped in the wheel.
"""

__version__ = "0.1.0"


def _jupyter_server_extension_points():
    from .app import CopilotApp

    return [{"module": "jupyter_copilot.app", "app": CopilotApp}]


def _jupyter_labextension_paths():
    return [{"src": "labextension", "dest": "jupyter-copilot"}]
