"""A client and a server driven in random order never desynchronise or overrun a window.

Hypothesis picks the actions (open streams, send bodies, respond, reset, ping, change settings,
GOAWAY) and how the bytes in flight are cut into deliveries. Any ProtocolError raised by either
receive_data is a failure: two correct peers must never accuse each other. At quiet points every
stream that was not reset must have delivered exactly the bytes that were sent on it.
"""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from muxwsgi import (
    Connection,
    ConnectionConfig,
    ConnectionState,
    DataReceived,
    ErrorCode,
    Event,
    FloodLimits,
    RequestReceived,
    ResponseReceived,
    Role,
    SettingCode,
    Settings,
    StreamEnded,
    StreamReset,
)

from .helpers import SIMPLE_VARS, spec


class PairMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        # Flood limits are tested elsewhere; here they would only cut the walks short.
        calm = FloodLimits(settings_burst=10_000, ping_burst=10_000, glitch_burst=10_000)
        self.client = Connection(
            Role.CLIENT, ConnectionConfig(connection_window_size=200_000, flood=calm)
        )
        self.server = Connection(
            Role.SERVER,
            ConnectionConfig(
                settings=Settings(max_concurrent_streams=8, initial_window_size=30_000), flood=calm
            ),
        )
        self.to_server = b""
        self.to_client = b""
        # per stream: bytes sent / received in each direction, and flags
        self.sent_up: dict[int, int] = {}
        self.got_up: dict[int, int] = {}
        self.sent_down: dict[int, int] = {}
        self.got_down: dict[int, int] = {}
        self.server_streams: set[int] = set()  # streams the server may still answer
        self.upload_open: set[int] = set()  # streams whose request body is still open
        self.responding: set[int] = set()  # head sent, body still open
        self.dead: set[int] = set()  # reset, refused or abandoned
        self.server_unacked: dict[int, int] = {}
        self.client_unacked: dict[int, int] = {}

    # ---------------------------------------------------------------- plumbing

    def _flush(self) -> None:
        self.to_server += self.client.data_to_send()
        self.to_client += self.server.data_to_send()

    def _server_events(self, events: list[Event]) -> None:
        for e in events:
            if type(e) is RequestReceived:
                self.server_streams.add(e.stream_id)
            elif type(e) is DataReceived:
                self.got_up[e.stream_id] = self.got_up.get(e.stream_id, 0) + len(e.data)
                self.server_unacked[e.stream_id] = (
                    self.server_unacked.get(e.stream_id, 0) + e.flow_controlled_length
                )
            elif type(e) is StreamReset:
                assert e.remote, f"server reset stream {e.stream_id} itself: {e}"
                self._kill(e.stream_id)

    def _client_events(self, events: list[Event]) -> None:
        for e in events:
            if type(e) is DataReceived:
                self.got_down[e.stream_id] = self.got_down.get(e.stream_id, 0) + len(e.data)
                self.client_unacked[e.stream_id] = (
                    self.client_unacked.get(e.stream_id, 0) + e.flow_controlled_length
                )
            elif type(e) is StreamReset:
                # The only resets a client may receive here: server resets and GOAWAY refusals.
                assert e.remote and e.error_code in (ErrorCode.CANCEL, ErrorCode.REFUSED_STREAM), e
                self._kill(e.stream_id)
            elif type(e) in (ResponseReceived, StreamEnded):
                pass

    def _kill(self, sid: int) -> None:
        self.dead.add(sid)
        self.server_streams.discard(sid)
        self.upload_open.discard(sid)
        self.responding.discard(sid)

    # ---------------------------------------------------------------- client actions

    @precondition(lambda self: self.client.can_open_stream)
    @rule(body=st.integers(0, 70_000), end=st.booleans())
    def open_stream(self, body: int, end: bool) -> None:
        vars = {**SIMPLE_VARS, "REQUEST_METHOD": "POST", "CONTENT_LENGTH": ""}
        first = min(
            body,
            self.client.remote_settings.initial_window_size,
            self.client.outbound_connection_window,
            16384,
        )
        sid = self.client.send_request(vars, body=b"u" * first, end_stream=end)
        self.sent_up[sid] = first
        if not end:
            self.upload_open.add(sid)
        self._flush()

    @precondition(lambda self: self.upload_open)
    @rule(data=st.data(), size=st.integers(0, 40_000), end=st.booleans())
    def upload(self, data: st.DataObject, size: int, end: bool) -> None:
        sid = data.draw(st.sampled_from(sorted(self.upload_open)))
        size = min(size, self.client.outbound_window(sid))
        self.client.send_data(sid, b"u" * size, end_stream=end)
        self.sent_up[sid] += size
        if end:
            self.upload_open.discard(sid)
        self._flush()

    @precondition(lambda self: self.sent_up)
    @rule(data=st.data())
    def client_reset(self, data: st.DataObject) -> None:
        sid = data.draw(st.sampled_from(sorted(self.sent_up)))
        self.client.reset_stream(sid, ErrorCode.CANCEL)
        self._kill(sid)
        self._flush()

    @rule(payload=st.binary(min_size=8, max_size=8))
    def client_ping(self, payload: bytes) -> None:
        if len(self.client._pings) < 10 and self.client.state is not ConnectionState.CLOSED:
            self.client.ping(payload)
            self._flush()

    @precondition(lambda self: self.client_unacked)
    @rule()
    def client_consumes(self) -> None:
        for sid, n in self.client_unacked.items():
            self.client.acknowledge_received_data(sid, n)
        self.client_unacked.clear()
        self._flush()

    # ---------------------------------------------------------------- server actions

    @precondition(lambda self: self.server_streams - self.responding)
    @rule(data=st.data(), status=st.sampled_from([200, 404, 500]), body=st.integers(0, 50_000))
    def respond(self, data: st.DataObject, status: int, body: int) -> None:
        candidates = sorted(self.server_streams - self.responding)
        sid = data.draw(st.sampled_from(candidates))
        if not self.server.is_open(sid):
            self.server_streams.discard(sid)
            return
        first = min(body, self.server.outbound_window(sid))
        end = first == body
        self.server.send_response(
            sid, status, [("X-Sid", str(sid))], body=b"d" * first, end_stream=end
        )
        self.sent_down[sid] = first
        if end:
            self.server_streams.discard(sid)
        else:
            self.responding.add(sid)
        self._flush()

    @precondition(lambda self: self.responding)
    @rule(data=st.data(), size=st.integers(0, 40_000), end=st.booleans())
    def download(self, data: st.DataObject, size: int, end: bool) -> None:
        sid = data.draw(st.sampled_from(sorted(self.responding)))
        if not self.server.is_open(sid):
            self._kill(sid)
            return
        size = min(size, self.server.outbound_window(sid))
        self.server.send_data(sid, b"d" * size, end_stream=end)
        self.sent_down[sid] += size
        if end:
            self.responding.discard(sid)
            self.server_streams.discard(sid)
        self._flush()

    @precondition(lambda self: self.server_unacked)
    @rule()
    def server_consumes(self) -> None:
        for sid, n in self.server_unacked.items():
            self.server.acknowledge_received_data(sid, n)
        self.server_unacked.clear()
        self._flush()

    @precondition(lambda self: self.server_streams)
    @rule(data=st.data())
    def server_reset(self, data: st.DataObject) -> None:
        sid = data.draw(st.sampled_from(sorted(self.server_streams)))
        self.server.reset_stream(sid, ErrorCode.CANCEL)
        self._kill(sid)
        self._flush()

    @rule(window=st.integers(0, 100_000), streams=st.integers(1, 20))
    def server_settings(self, window: int, streams: int) -> None:
        if self.server.state is ConnectionState.CLOSED:
            return
        self.server.update_settings(
            {SettingCode.INITIAL_WINDOW_SIZE: window, SettingCode.MAX_CONCURRENT_STREAMS: streams}
        )
        self._flush()

    @precondition(lambda self: self.server.goaway_sent is None)
    @rule()
    def server_goaway(self) -> None:
        self.server.send_goaway()
        self._flush()

    # ---------------------------------------------------------------- the network

    @precondition(lambda self: self.to_server)
    @rule(cut=st.integers(1, 100_000))
    def deliver_to_server(self, cut: int) -> None:
        chunk, self.to_server = self.to_server[:cut], self.to_server[cut:]
        self._server_events(self.server.receive_data(chunk))
        self._flush()

    @precondition(lambda self: self.to_client)
    @rule(cut=st.integers(1, 100_000))
    def deliver_to_client(self, cut: int) -> None:
        chunk, self.to_client = self.to_client[:cut], self.to_client[cut:]
        self._client_events(self.client.receive_data(chunk))
        self._flush()

    # ---------------------------------------------------------------- invariants

    @invariant()
    def never_more_than_sent(self) -> None:
        for sid, n in self.got_up.items():
            assert n <= self.sent_up[sid]
        for sid, n in self.got_down.items():
            assert n <= self.sent_down[sid]

    @invariant()
    def quiet_means_everything_arrived(self) -> None:
        if self.to_server or self.to_client:
            return
        for sid, n in self.sent_up.items():
            if sid not in self.dead and sid in self.server_streams | self.responding:
                assert self.got_up.get(sid, 0) == n, f"stream {sid}: sent {n} up"
        for sid, n in self.sent_down.items():
            if sid not in self.dead:
                assert self.got_down.get(sid, 0) == n, f"stream {sid}: sent {n} down"

    @invariant()
    def nobody_closed(self) -> None:
        assert self.client.state is not ConnectionState.CLOSED
        assert self.server.state is not ConnectionState.CLOSED


PairMachine.TestCase.settings = settings(stateful_step_count=40)
TestPair = spec("W-2", "W-3", "E-5", "E-7", "S-1", "S-3", "X-4")(PairMachine.TestCase)
