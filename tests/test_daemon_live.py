"""The live view of a job (issue 18): a job that asks for it (params.live_interval) gets the
result so far in its progress, RGBA at the content's size, from the first step and then at the
interval; the wire leaves both out otherwise, and status never carries images. A real daemon
over ZeroMQ, random weights, tiny images."""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np
import pytest
from daemon_support import DaemonProcess, content_image, running_daemon, style_png

from neural_style_protocol.errors import ErrorCode, ProtocolError
from neural_style_protocol.images import RawImage
from neural_style_protocol.messages import Progress, Result
from neural_style_protocol.params import JobParams
from neural_style_protocol.replay import ReplayGuard
from neural_style_protocol.wire import deserialize, serialize

KEY = b"live key"
WIDTH, HEIGHT = 40, 32


def test_the_interval_is_sent_only_when_asked_for_and_checked():
    assert "live_interval" not in JobParams().to_wire()
    assert JobParams.from_wire({"live_interval": 1}).live_interval == 1.0
    with pytest.raises(ProtocolError) as caught:
        JobParams(live_interval=0.01)
    assert caught.value.code is ErrorCode.INVALID_PARAM
    assert "live_interval" in caught.value.message


def test_a_live_image_rides_in_progress_and_is_left_off_without_one():
    image = RawImage(bytes(range(48)), 4, 3)
    live = Progress("job-l", 3, 1, 1, 2, 10, 0.2, {}, 1.0, live_image=image)
    frames = serialize(live, KEY)
    assert deserialize(frames, KEY, ReplayGuard()) == live
    plain = Progress("job-l", 4, 1, 1, 3, 10, 0.3, {}, 1.5)
    assert "live_image" not in json.loads(serialize(plain, KEY)[3])["body"]
    with pytest.raises(ProtocolError, match="live image must be an RGBA"):
        Progress("job-l", 5, 1, 1, 3, 10, 0.3, {}, 1.5, live_image=RawImage(bytes(12), 4, 3, 1))


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    with running_daemon(tmp_path_factory.mktemp("runtime"), idle_worker=True) as process:
        yield process


@pytest.mark.slow
def test_a_job_that_asks_gets_the_result_so_far_at_the_interval(daemon: DaemonProcess) -> None:
    content, pixels = content_image(WIDTH, HEIGHT)
    # Adam never stops early: 40 steps, long enough for several live images.
    params = JobParams(iterations=40, optimizer="adam", live_interval=0.1)
    live: list[RawImage] = []
    statuses = []
    with daemon.client() as client:
        for event in client.submit("live", content, [style_png()], params):
            if isinstance(event, Progress) and event.live_image is not None:
                live.append(event.live_image)
                if len(live) == 2:
                    statuses.append(client.status())
            if isinstance(event, Result):
                result = event
        plain = list(client.submit("plain", content, [style_png()], JobParams(iterations=3)))
    assert not result.cancelled and len(live) >= 2
    for image in live:
        assert (image.width, image.height) == (WIDTH, HEIGHT)
        received = np.frombuffer(image.data, np.uint8).reshape(HEIGHT, WIDTH, 4)
        assert np.array_equal(received[..., 3], pixels[..., 3])  # as the result: alpha kept
    assert live[0].data != live[-1].data  # the picture forms
    (status,) = statuses
    assert status.running is not None and status.running.live_image is None  # status: small
    assert not any(isinstance(e, Progress) and e.live_image is not None for e in plain)
