"""The daemon's pure parts without sockets or processes: job states and their guards, the
bounded queue, kept results and their expiry, client silence, and the small helpers around
them (log rate limit, progress rate limit, endpoints, parameter mapping)."""

from __future__ import annotations

import pytest

from neural_style_daemon.server.broker import DropLog
from neural_style_daemon.server.jobs import (
    InvalidTransition,
    Job,
    JobBook,
    JobState,
    PeerClock,
    QueueFull,
)
from neural_style_daemon.server.supervisor import describe_exit
from neural_style_protocol.errors import ErrorCode
from neural_style_protocol.images import RawImage
from neural_style_protocol.messages import Error, JobStats, Result
from neural_style_protocol.transport import EndpointError, check_endpoint


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def job(job_id: str) -> Job:
    return Job(job_id, None, {b"peer": "0" * 32})


def ended(job_id: str) -> Error:
    return Error(job_id, ErrorCode.CANCELLED, "cancelled")


@pytest.mark.parametrize(
    "path",
    [
        [JobState.RUNNING, JobState.DONE],
        [JobState.RUNNING, JobState.CANCELLING, JobState.CANCELLED],
        [JobState.RUNNING, JobState.CANCELLING, JobState.DONE],  # finished before it noticed
        [JobState.RUNNING, JobState.FAILED],
        [JobState.CANCELLED],
        [JobState.FAILED],
    ],
)
def test_allowed_lives_of_a_job(path: list[JobState]) -> None:
    subject = job("a")
    for state in path:
        subject.move(state)
    assert subject.terminal


@pytest.mark.parametrize(
    "path",
    [
        [JobState.DONE],  # never ran
        [JobState.CANCELLING],  # was not running
        [JobState.RUNNING, JobState.QUEUED],
        [JobState.RUNNING, JobState.CANCELLED],  # a running job is asked first
        [JobState.RUNNING, JobState.DONE, JobState.RUNNING],
        [JobState.CANCELLED, JobState.QUEUED],
    ],
)
def test_refused_transitions(path: list[JobState]) -> None:
    subject = job("a")
    with pytest.raises(InvalidTransition):
        for state in path:
            subject.move(state)


def test_the_queue_is_fifo_bounded_and_positions_count_from_the_running_job() -> None:
    book = JobBook(queue_limit=2)
    first, second, third = job("1"), job("2"), job("3")
    book.add(first)
    book.add(second)
    with pytest.raises(QueueFull):
        book.add(third)
    assert book.start_next() is first and first.state is JobState.RUNNING
    assert book.start_next() is None  # one at a time
    book.add(third)  # the running job no longer counts against the queue
    assert [book.position(j) for j in (first, second, third)] == [0, 1, 2]
    assert book.active() == [first, second, third]


def test_a_job_id_cannot_be_queued_twice() -> None:
    book = JobBook()
    book.add(job("same"))
    with pytest.raises(ValueError):
        book.add(job("same"))


def test_finishing_keeps_the_job_and_frees_its_images() -> None:
    book = JobBook()
    queued, running = job("q"), job("r")
    book.add(running)
    book.add(queued)
    book.start_next()
    book.finish(queued, JobState.CANCELLED, ended("q"))
    assert book.queued == () and book.find("q") is queued and queued.request is None
    book.finish(running, JobState.FAILED, ended("r"))
    assert book.running is None and book.find("r").state is JobState.FAILED
    assert book.start_next() is None


def test_kept_jobs_expire_after_their_time_and_are_bounded_in_number() -> None:
    clock = FakeClock()
    book = JobBook(keep_seconds=60, keep_max=2, clock=clock)
    for name in ("a", "b"):
        book.add(job(name))
        book.finish(book.find(name), JobState.CANCELLED, ended(name))
        clock.now += 10
    book.add(job("c"))
    book.finish(book.find("c"), JobState.CANCELLED, ended("c"))
    assert book.find("a") is None and book.kept_count() == 2  # oldest out first
    clock.now += 45  # b is 55 s old, c 45 s
    assert book.find("b") is not None
    clock.now += 10
    assert book.find("b") is None and book.find("c") is not None
    book.forget("c")
    assert book.find("c") is None


def test_kept_results_are_bounded_in_bytes_but_the_latest_is_always_kept() -> None:
    book = JobBook(keep_max=16, keep_bytes=3000)

    def done(name: str, size: int) -> None:
        book.add(job(name))
        book.start_next()
        image = RawImage(bytes(size * size * 4), size, size)
        book.finish(book.find(name), JobState.DONE, Result(name, image, False, JobStats(1, 0.1, 0)))

    done("a", 20)  # 1600 bytes
    done("b", 10)  # 400
    assert book.kept_count() == 2 and book.kept_bytes == 2000
    done("c", 20)  # 3600 in all: the oldest goes
    assert book.find("a") is None and book.kept_bytes == 2000
    done("huge", 40)  # 6400 on its own: kept alone
    assert book.kept_count() == 1 and book.kept_bytes == 6400
    book.forget("huge")
    assert book.kept_bytes == 0


def test_peer_silence() -> None:
    clock = FakeClock()
    peers = PeerClock(clock)
    peers.touch(b"a")
    clock.now += 5
    peers.touch(b"b")
    assert peers.silent([b"a"], timeout=4) and not peers.silent([b"a", b"b"], timeout=4)
    assert peers.silent([], timeout=4) and peers.silent([b"never"], timeout=4)
    clock.now += 3
    peers.prune(older_than=6)
    assert len(peers) == 1


def test_dropped_messages_are_logged_at_a_bounded_rate(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    drops = DropLog(per_minute=3, clock=clock)
    for _ in range(10):
        drops.note("garbage")
    assert len(caplog.records) == 3 and drops.total == 10
    clock.now += 61
    drops.note("garbage")
    assert "7 more" in caplog.records[3].getMessage()


def test_exit_descriptions() -> None:
    assert describe_exit(-9) == "killed by SIGKILL"
    assert describe_exit(3) == "exit code 3"


@pytest.mark.parametrize(
    "endpoint, expected",
    [
        ("tcp://127.0.0.1:*", "tcp://127.0.0.1:*"),
        ("tcp://127.0.0.1:0", "tcp://127.0.0.1:*"),
        ("tcp://localhost:5599", "tcp://localhost:5599"),
        ("tcp://[::1]:5599", "tcp://[::1]:5599"),
        ("ipc:///run/user/1000/ns.sock", "ipc:///run/user/1000/ns.sock"),
    ],
)
def test_loopback_and_ipc_endpoints(endpoint: str, expected: str) -> None:
    assert check_endpoint(endpoint) == expected


@pytest.mark.parametrize(
    "endpoint",
    [
        "tcp://0.0.0.0:5599",
        "tcp://192.168.1.2:5599",
        "tcp://example.com:80",
        "tcp://127.0.0.1",
        "tcp://127.0.0.1:70000",
        "http://127.0.0.1:80",
        "ipc://",
    ],
)
def test_other_endpoints_are_refused(endpoint: str) -> None:
    with pytest.raises(EndpointError):
        check_endpoint(endpoint)
