"""The client against a hand-driven ROUTER on loopback: replies it cannot read end the request."""

from __future__ import annotations

import json
import os
import threading
import time
import uuid

import pytest
import zmq

from neural_style_protocol.client import DaemonClient
from neural_style_protocol.connection import ConnectionInfo, new_key
from neural_style_protocol.errors import DaemonRefused, ErrorCode
from neural_style_protocol.replay import ReplayGuard
from neural_style_protocol.version import PROTOCOL_VERSION
from neural_style_protocol.wire import DELIMITER, deserialize_envelope, sign, split_routing


def _signed_pong_with_an_unknown_key(key: bytes, parent_id: str) -> list[bytes]:
    """What a newer daemon might send: a correctly signed pong whose body this side does not
    know."""
    header = json.dumps(
        {
            "version": PROTOCOL_VERSION,
            "type": "pong",
            "msg_id": uuid.uuid4().hex,
            "session": uuid.uuid4().hex,
            "time": time.time(),
            "parent_id": parent_id,
        }
    ).encode()
    content = json.dumps({"body": {"from_the_future": 1}, "buffers": []}).encode()
    return [DELIMITER, sign(key, header, content), header, content]


def test_a_signed_reply_the_client_cannot_read_ends_the_request_at_once():
    context = zmq.Context()
    router = context.socket(zmq.ROUTER)
    router.linger = 0
    port = router.bind_to_random_port("tcp://127.0.0.1")
    info = ConnectionInfo(f"tcp://127.0.0.1:{port}", new_key(), os.getpid(), "0.1.0")

    def answer_once() -> None:
        if router.poll(5000):
            routing, rest = split_routing(router.recv_multipart())
            request = deserialize_envelope(rest, info.key_bytes, ReplayGuard())
            router.send_multipart(
                routing + _signed_pong_with_an_unknown_key(info.key_bytes, request.header.msg_id)
            )

    responder = threading.Thread(target=answer_once)
    responder.start()
    client = DaemonClient(info, context=context)
    try:
        started = time.monotonic()
        with pytest.raises(DaemonRefused) as refused:
            client.ping(timeout=30)
        assert time.monotonic() - started < 10  # answered, not timed out
        assert refused.value.code is ErrorCode.MALFORMED
        assert "same version" in str(refused.value)
    finally:
        responder.join()
        client.close()
        router.close()
        context.term()
