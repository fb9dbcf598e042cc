"""The flow-control arithmetic of muxwsgi/_windows.py, one window at a time (PROTOCOL.md §9)."""

from __future__ import annotations

from muxwsgi import MAX_WINDOW
from muxwsgi._windows import DEFAULT_WINDOW, FlowControl

from .helpers import spec


@spec("W-7")
def test_credit_goes_back_in_half_window_steps() -> None:
    flow = FlowControl(0, DEFAULT_WINDOW)
    assert flow.received(40000)
    assert flow.acknowledge(32766) == 0  # below half the window: wait
    assert flow.acknowledge(1) == 32767  # half of 65535: all of it goes back
    assert (flow.recv_window, flow.recv_processed) == (DEFAULT_WINDOW - 40000 + 32767, 0)


@spec("W-7")
def test_an_exhausted_window_reopens_early() -> None:
    flow = FlowControl(0, DEFAULT_WINDOW)
    assert flow.received(DEFAULT_WINDOW)
    assert flow.acknowledge(1023) == 0
    assert flow.acknowledge(1) == 1024  # the peer is blocked: 1024 bytes are worth a frame
    small = FlowControl(0, 1000)
    assert small.received(1000)
    assert small.acknowledge(249) == 0
    assert small.acknowledge(1) == 250  # a quarter of a window smaller than 4096


def test_credit_reopens_to_the_window_size_in_force() -> None:
    flow = FlowControl(0, 1000)
    assert flow.received(600)
    flow.shift_receive(-500)  # this side's INITIAL_WINDOW_SIZE went from 1000 to 500
    assert flow.recv_window == -100
    assert flow.acknowledge(600) == 600
    assert (flow.recv_window, flow.recv_processed) == (500, 0)  # the new size, not the old


@spec("W-3", "E-7")
def test_receive_overrun_and_the_empty_frame() -> None:
    flow = FlowControl(0, 100)
    assert flow.received(100)
    assert not flow.received(1)
    flow = FlowControl(0, 100)
    flow.shift_receive(-150)
    assert flow.received(0)  # END_STREAM in an empty frame always gets through


@spec("W-5", "E-7")
def test_send_window_opens_up_to_two_to_the_31() -> None:
    flow = FlowControl(MAX_WINDOW - 1, 0)
    assert not flow.open(2)
    assert flow.send_window == MAX_WINDOW - 1  # unchanged: the caller raises its error
    assert flow.open(1)
    assert flow.open(-MAX_WINDOW - 5)  # a shrinking INITIAL_WINDOW_SIZE may go below zero
    assert flow.send_window == -5


@spec("W-2")
def test_sent_data_takes_credit_from_the_stream_and_the_connection() -> None:
    connection = FlowControl(DEFAULT_WINDOW, DEFAULT_WINDOW)
    stream = FlowControl(1000, DEFAULT_WINDOW)
    stream.sent(300, connection)
    assert (stream.send_window, connection.send_window) == (700, DEFAULT_WINDOW - 300)
