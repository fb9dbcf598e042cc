"""The frontend service: a Flask page that calls the backend through muxwsgi.client.

    BACKEND_URL=mux://127.0.0.1:3031 \\
        muxwsgi serve frontend:app --chdir examples/flask --bind 127.0.0.1:8000
    curl http://127.0.0.1:8000/

Every request to the frontend makes requests to the backend over a few long-lived,
multiplexed connections, with a deadline; a backend failure becomes a 502, not a hang.
"""

from __future__ import annotations

import json
import os

from flask import Flask

from muxwsgi.client import Client, ClientError

BACKEND_URL = os.environ.get("BACKEND_URL", "mux://127.0.0.1:3031")

# One client per worker process, open for the life of the process: it pools and multiplexes
# its connections and is safe to share between the worker's threads. Workers import the
# application after they are forked, so no connection is ever shared between processes.
backend = Client(BACKEND_URL, timeout=2.0, retries=1).open()

app = Flask(__name__)


@app.get("/")
def index() -> tuple[str, int, dict[str, str]]:
    try:
        books = backend.get("/books").json()
    except ClientError as exc:
        return f"the catalogue is unavailable: {exc}\n", 502, {"Content-Type": "text/plain"}
    lines = [f"{b['title']}: {'in stock' if b['stock'] else 'sold out'}" for b in books]
    return "\n".join(lines) + "\n", 200, {"Content-Type": "text/plain"}


@app.post("/buy/<int:book_id>")
def buy(book_id: int) -> tuple[str, int, dict[str, str]]:
    try:
        response = backend.post(
            f"/books/{book_id}/reserve",
            headers={"Content-Type": "application/json", "X-Caller": "frontend"},
            body=json.dumps({"quantity": 1}).encode(),
        )
    except ClientError as exc:
        return f"the catalogue is unavailable: {exc}\n", 502, {"Content-Type": "text/plain"}
    if response.status == 404:
        return "no such book\n", 404, {"Content-Type": "text/plain"}
    if response.status == 409:
        return "sold out\n", 409, {"Content-Type": "text/plain"}
    return f"reserved: {response.json()}\n", 200, {"Content-Type": "text/plain"}
