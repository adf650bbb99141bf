"""The campus deployment: a JupyterHub-managed copilot service.

Students' servers do not talk to the shared engine themselves (any secret in a student
container is public: students have shells). Each user server relays its requests to
this service with its own ``JUPYTERHUB_API_TOKEN``; the service identifies the student
with JupyterHub (HubAuth), applies the course policy, per-student quotas and usage
accounting, builds the prompt and runs the same completion/explanation pipeline as a
single-user server, against an OpenAI-compatible engine (vLLM, llama-server, Ollama).

- `app`: :class:`~jupyter_copilot.hub.app.CopilotHubService`, every setting a trait.
- `auth`: who is asking (HubAuth: token -> hub user, groups, admin).
- `handlers`: the routes (same API as the Jupyter server extension, plus admin routes).
- `quotas`: rates, requests in flight, daily tokens.
- `metrics`: Prometheus exposition.
- `client`: what a user server uses to relay to the service (``CopilotApp.hub_service_url``).

Run it: ``jupyter copilot hub-service [--config FILE] [--CopilotHubService.trait=value …]``
(see docs/deployment.md for the `jupyterhub_config.py` that registers it).
"""

from __future__ import annotations

# Sent by a user server's relay: the service checks it names the token's owner.
USER_HEADER = "X-Copilot-User"


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "hub-service",
        help="run the JupyterHub copilot service (campus deployment)",
        description="Run the copilot service that JupyterHub users' servers relay to. "
        "Settings: --config FILE (a Python file of c.CopilotHubService.* settings) and "
        "--CopilotHubService.<trait>=<value>; `--help-all` lists every setting.",
    )
    parser.add_argument("--config", default="", help="config file (jupyter_copilot_hub_config.py)")
    parser.add_argument("--help-all", action="store_true", help="list every setting and exit")
    # Any other --CopilotHubService.<trait>=<value> goes to traitlets (see cli.main).
    parser.set_defaults(func=_run, extra_args=True)


def _run(args) -> int:
    from .app import CopilotHubService

    argv = list(args.extra_args)
    if args.help_all:
        argv.append("--help-all")
    if args.config:
        argv.append(f"--CopilotHubService.config_file={args.config}")
    CopilotHubService.launch_instance(argv)
    return 0
