"""The ceiling for bench/load.py: the least a Flask endpoint over taskapi's stack can do.

    uv run python bench/ceiling_app.py [--host 127.0.0.1] [--port 8001]

A bare Flask app under taskapi's own gunicorn set-up (``taskapi.server.gunicorn_options``: the
same gevent worker class, worker count, thread pool and keep-alive) that decodes the HS256
access JWT taskapi issues and selects one task row by primary key through the SQLAlchemy ORM,
on taskapi's engine settings (``taskapi.db.make_engine``). It reads the same ``TASKAPI_*``
variables as ``taskapi serve`` (database URL, secret, workers) and serves one route,
``GET /api/v1/tasks/<id>``, so the GET script runs against it unchanged. No rate limiting, no
session lookup, no logging: what taskapi's endpoints cost beyond it is the price of their
features.
"""

from __future__ import annotations

import argparse
import uuid
from typing import Any

import jwt
from flask import Flask, request
from sqlalchemy.orm import sessionmaker

from taskapi.db import make_engine
from taskapi.models import Task
from taskapi.server import TaskApiServer, gunicorn_options
from taskapi.settings import Settings, load_settings

REQUIRED_CLAIMS = ["exp", "iat", "sub", "sid", "jti", "type"]


def task_body(task: Task) -> dict[str, Any]:
    """The task as JSON, about the size of taskapi's answer."""
    return {
        "id": str(task.id),
        "title": task.title,
        "notes": task.notes,
        "completed": task.completed,
        "completed_at": task.completed_at.isoformat() if task.completed_at else None,
        "due_at": task.due_at.isoformat() if task.due_at else None,
        "priority": task.priority,
        "tags": task.tags,
        "created_at": task.created_at.isoformat(),
        "updated_at": task.updated_at.isoformat(),
        "version": task.version,
    }


def bearer_claims(secret: str) -> dict[str, Any] | None:
    """The claims of the request's Bearer access token, or None when it does not verify."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    try:
        claims: dict[str, Any] = jwt.decode(
            token, secret, algorithms=["HS256"], options={"require": REQUIRED_CLAIMS}
        )
    except jwt.InvalidTokenError:
        return None
    return claims if claims.get("type") == "access" else None


def create_ceiling_app(settings: Settings) -> Flask:
    """One route: decode the JWT, ``session.get(Task, id)``, answer the row as JSON."""
    app = Flask(__name__)
    engine = make_engine(settings.sqlalchemy_url, pool_size=settings.db_pool_size,
                         max_overflow=settings.db_max_overflow)  # fmt: skip
    sessions = sessionmaker(bind=engine, expire_on_commit=False)

    @app.get("/api/v1/tasks/<task_id>")
    def get_task(task_id: str) -> tuple[dict[str, Any], int]:
        """The caller's task, 404 for another's or a missing one, 401 without a valid token."""
        claims = bearer_claims(settings.secret_key)
        if claims is None:
            return {"error": "A valid access token is required.", "code": "unauthorized"}, 401
        try:
            key = uuid.UUID(task_id)
        except ValueError:
            key = None
        with sessions() as db:
            task = db.get(Task, key) if key else None
        if task is None or str(task.owner_id) != claims["sub"]:
            return {"error": "Not found.", "code": "not_found"}, 404
        return task_body(task), 200

    return app


class CeilingServer(TaskApiServer):
    """taskapi's gunicorn application, building the ceiling app in each worker instead."""

    def load(self) -> Flask:
        """Build the ceiling app inside the worker (after the fork), as taskapi does."""
        return create_ceiling_app(self.settings)


def main() -> None:
    """Serve the ceiling until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()
    settings = load_settings()
    CeilingServer(settings, gunicorn_options(settings, host=args.host, port=args.port)).run()


if __name__ == "__main__":
    main()
