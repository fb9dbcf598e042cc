"""Realistic request vars for benchmarks: what nginx's uwsgi_params and a browser produce."""

from __future__ import annotations

#: 15 typical nginx vars (the core micro-benchmark of issue 2).
NGINX_15 = {
    "QUERY_STRING": "page=2&sort=name",
    "REQUEST_METHOD": "GET",
    "CONTENT_TYPE": "",
    "CONTENT_LENGTH": "",
    "REQUEST_URI": "/api/items?page=2&sort=name",
    "PATH_INFO": "/api/items",
    "DOCUMENT_ROOT": "/usr/share/nginx/html",
    "SERVER_PROTOCOL": "HTTP/1.1",
    "REQUEST_SCHEME": "http",
    "REMOTE_ADDR": "10.0.3.17",
    "REMOTE_PORT": "51234",
    "SERVER_PORT": "80",
    "SERVER_NAME": "api.example.com",
    "HTTP_HOST": "api.example.com",
    "HTTP_USER_AGENT": "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0",
}

#: nginx's uwsgi_params plus typical browser headers: 28 vars.
NGINX_BROWSER_28 = {
    **NGINX_15,
    "HTTP_ACCEPT": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    "HTTP_ACCEPT_LANGUAGE": "en-US,en;q=0.5",
    "HTTP_ACCEPT_ENCODING": "gzip, deflate, br",
    "HTTP_CONNECTION": "keep-alive",
    "HTTP_COOKIE": "session=3f1c2a7e55d14c1e9e0b3f5b8a1d2c4e; theme=dark; lang=en",
    "HTTP_UPGRADE_INSECURE_REQUESTS": "1",
    "HTTP_SEC_FETCH_DEST": "document",
    "HTTP_SEC_FETCH_MODE": "navigate",
    "HTTP_SEC_FETCH_SITE": "none",
    "HTTP_SEC_FETCH_USER": "?1",
    "HTTP_CACHE_CONTROL": "max-age=0",
    "HTTP_DNT": "1",
    "HTTP_X_REQUEST_ID": "9f1c2a7e-55d1-4c1e-9e0b-3f5b8a1d2c4e",
}

RESPONSE_HEADERS = [("Content-Type", "text/plain"), ("Content-Length", "13")]
RESPONSE_BODY = b"Hello, World!"
