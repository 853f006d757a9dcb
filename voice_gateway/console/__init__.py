"""The web consoles for the people behind the line: agents, supervisors, trainers and admins.

- `app.py`: `make_app(settings, backend)`, the Starlette application (pages, sign-in, the JSON API in `api.py`);
- `security.py`: sessions, CSRF and `requires(*roles)`; `roles.py`: `Role`, `ConsoleUser`;
- `store.py`: users (argon2 password hashes) in the consoles' database; `audit.py`: the audit log;
- `backend.py`: `ConsoleBackend`, the Protocol the routes delegate the calls to, and `ActionRefused`;
- `server.py`: `serve_console(app, host, port)`, uvicorn in the gateway's event loop.

Users are added with `hotline users add NAME --role ROLE --password-stdin`.
"""

from voice_gateway.console.app import make_app
from voice_gateway.console.backend import ActionRefused, AgentStatus, CallAction, ConsoleBackend
from voice_gateway.console.roles import ConsoleUser, Role
from voice_gateway.console.server import serve_console

__all__ = [
    "ActionRefused",
    "AgentStatus",
    "CallAction",
    "ConsoleBackend",
    "ConsoleUser",
    "Role",
    "make_app",
    "serve_console",
]
