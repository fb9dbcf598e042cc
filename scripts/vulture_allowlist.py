"""Names that vulture cannot see used, each with the reason it is used (vulture's whitelist
format: a use of a name here counts as a use everywhere).

vulture is the dead-code check of CI (settings in pyproject.toml's ``[tool.vulture]``); it
knows a name is used when some code it reads names it. The names below are used all the same:
called by a library or the interpreter, looked up by a string, or offered to users although no
code of the project calls them. tests/test_dead_code.py runs this file, so an entry whose
name is renamed or removed fails there instead of quietly allowing a new dead name.
"""

import opentelemetry.trace

import benchmarks.app
import muxwsgi
import muxwsgi.client
from muxwsgi.client._async.response import AsyncResponse
from muxwsgi.client._classic_parser import ResponseParser
from muxwsgi.client._httpx import AsyncMuxTransport, MuxTransport
from muxwsgi.client._primitives import _StreamProtocol
from muxwsgi.server.arbiter import Arbiter
from muxwsgi.server.config_load import _HelpFormatter
from muxwsgi.server.exchange import EmptyInput, InputStream
from muxwsgi.server.interfaces import Post
from muxwsgi.server.protocols.base import BaseProtocol
from muxwsgi.server.protocols.http import _RequestReader
from muxwsgi.server.tls import TlsTransport
from muxwsgi.server.wsgi import ReadableInput
from tests.conformance.peer import Peer
from tests.server import apps

# ---------------------------------------------------------------- called by a library

# httptools calls its callbacks object's on_* methods by name while it parses.
_RequestReader.on_message_begin
_RequestReader.on_url
_RequestReader.on_header
_RequestReader.on_headers_complete
_RequestReader.on_body
_RequestReader.on_message_complete
ResponseParser.on_status
ResponseParser.on_header
ResponseParser.on_headers_complete
ResponseParser.on_body
ResponseParser.on_message_complete

# asyncio calls a protocol's callbacks: the peer half-closed; the transport's buffer is full.
BaseProtocol.eof_received
BaseProtocol.pause_writing
_StreamProtocol.eof_received
_StreamProtocol.pause_writing
# The TLS layer's transport for the inner protocol implements asyncio.Transport whole, as the
# inner protocols and asyncio may call any of it.
TlsTransport.is_reading
TlsTransport.get_protocol

# httpx calls a transport's handle_request / handle_async_request for every request.
MuxTransport.handle_request
AsyncMuxTransport.handle_async_request

# OpenTelemetry's API reads its global tracer provider from these; tests/otel.py resets them
# as OpenTelemetry's own test utilities do, so that a test's provider does not outlive it.
opentelemetry.trace._TRACER_PROVIDER_SET_ONCE
opentelemetry.trace._TRACER_PROVIDER

# argparse's HelpFormatter calls _split_lines to wrap help text (overridden: no hyphen breaks).
_HelpFormatter._split_lines

# ---------------------------------------------------------------- called by the interpreter

# PEP 562: `from muxwsgi.client import MuxTransport` imports httpx only when asked for.
muxwsgi.client.__getattr__
# The events' typed equality: `!=` calls __ne__, set on every event class in a loop.
muxwsgi.RequestReceived.__ne__
# A Protocol's call signature: a Post is called as post(func, *args).
Post.__call__

# ---------------------------------------------------------------- looked up by a string

# The arbiter dispatches signal SIGxxx to handle_xxx with getattr.
Arbiter.handle_chld
Arbiter.handle_hup
Arbiter.handle_term
Arbiter.handle_quit
Arbiter.handle_ttin
Arbiter.handle_ttou
Arbiter.handle_usr1
# uWSGI's --wsgi-file loads the callable named `application`.
benchmarks.app.application
# The conformance peer dispatches frame type T to _on_t with getattr.
Peer._on_settings
Peer._on_headers
Peer._on_ping
Peer._on_goaway
Peer._on_window_update
# Served by name: "tests.server.apps:validated_app".
apps.validated_app

# ---------------------------------------------------------------- public API no code here calls

# PEP 3333: wsgi.input has readlines(); applications call it.
InputStream.readlines
EmptyInput.readlines
ReadableInput.readlines
# The client's request methods and response properties, for users.
muxwsgi.client.Client.patch
muxwsgi.client.Client.delete
muxwsgi.client.Response.is_success
AsyncResponse.is_success
muxwsgi.client.Headers.get_list
muxwsgi.client.Histogram.quantile
# The core's connection, for users of the sans-IO API (and its tests).
muxwsgi.Connection.highest_stream_id
muxwsgi.Connection.enforced_settings
muxwsgi.Connection.update_settings
muxwsgi.Flags.NONE
# What the peer did, counted for the user of a Connection (read by tests, not by the server).
muxwsgi.Counters.streams_opened
muxwsgi.Counters.streams_refused
muxwsgi.Counters.resets_received
muxwsgi.Counters.resets_sent
muxwsgi.Counters.pings_received
muxwsgi.Counters.settings_received
muxwsgi.Counters.empty_frames
muxwsgi.Counters.glitches
