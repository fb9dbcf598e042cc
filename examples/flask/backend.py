"""The backend service: a small JSON API in Flask, served by muxwsgi.

    muxwsgi serve backend:app --chdir examples/flask --bind 127.0.0.1:3031

Nothing here knows about muxwsgi: it is a plain Flask (WSGI) application.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, abort, request

app = Flask(__name__)

BOOKS: dict[int, dict[str, Any]] = {
    1: {"id": 1, "title": "The Pragmatic Programmer", "stock": 3},
    2: {"id": 2, "title": "Structure and Interpretation of Computer Programs", "stock": 0},
    3: {"id": 3, "title": "A Philosophy of Software Design", "stock": 7},
}


@app.get("/books")
def list_books() -> list[dict[str, Any]]:
    return list(BOOKS.values())


@app.get("/books/<int:book_id>")
def get_book(book_id: int) -> dict[str, Any]:
    if book_id not in BOOKS:
        abort(404)
    return BOOKS[book_id]


@app.post("/books/<int:book_id>/reserve")
def reserve(book_id: int) -> tuple[dict[str, Any], int]:
    if book_id not in BOOKS:
        abort(404)
    quantity = int((request.get_json(silent=True) or {}).get("quantity", 1))
    book = BOOKS[book_id]
    if book["stock"] < quantity:
        return {"error": "not enough stock", "stock": book["stock"]}, 409
    return {"id": book_id, "reserved": quantity, "by": request.headers.get("X-Caller", "?")}, 200
