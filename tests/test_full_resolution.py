"""Jobs larger than their memory allows whole, at their own size in tiles: from the command line
and through a daemon capped with --max-memory, with the tile in the progress."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from daemon_support import DaemonProcess, content_image, read_all, style_png
from memory_support import CAPPED_TILE_SIZE, capped_below_whole
from PIL import Image

from neural_style_daemon.cli import main
from neural_style_daemon.engine.devices import has_fast_bf16
from neural_style_protocol.errors import ErrorCode
from neural_style_protocol.messages import Error, Progress, Result, WorkerState
from neural_style_protocol.params import JobParams

pytestmark = pytest.mark.slow

SIZE = (480, 360)
# The daemon's and the command line's engine: bf16 where this CPU has it fast.
MIXED_PRECISION = has_fast_bf16(torch.device("cpu"))
CAP_GIB = capped_below_whole(SIZE, MIXED_PRECISION) / 2**30
TILED = f"evaluating it in {CAPPED_TILE_SIZE} px tiles"


def test_the_command_line_runs_a_job_capped_below_its_whole_size_in_tiles(tmp_path, caplog):
    content, style, out = tmp_path / "c.png", tmp_path / "s.png", tmp_path / "out.png"
    Image.fromarray(content_image(*SIZE)[1][..., :3]).save(content)
    style.write_bytes(style_png())
    code = main(
        [
            *("stylize", str(content), str(style), "-o", str(out)),
            *("--max-memory", f"{CAP_GIB:.6f}", "--local", "--weights", "random"),
            *("--device", "cpu", "--iterations", "2", "-q"),
        ]
    )
    assert code == 0
    assert TILED in caplog.text  # the console's warning line (pytest captures the log)
    with Image.open(out) as written:
        assert written.size == SIZE  # at its size, not shrunk


@pytest.fixture(scope="module")
def capped_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    daemon = DaemonProcess(tmp_path_factory.mktemp("runtime"), "--max-memory", f"{CAP_GIB:.6f}")
    try:
        daemon.wait_listening()
        daemon.wait_worker(WorkerState.IDLE)
        yield daemon
    finally:
        assert daemon.terminate() == 0, daemon.stderr()


def test_a_capped_daemon_runs_a_larger_job_in_tiles_and_reports_each_tile(capped_daemon):
    with capped_daemon.client() as client:
        events = read_all(
            client.submit("tiled", content_image(*SIZE)[0], [style_png()], JobParams(iterations=2))
        )
    result = events[-1]
    assert isinstance(result, Result) and not result.cancelled
    assert (result.image.width, result.image.height) == SIZE
    assert len(result.warnings) == 1 and TILED in result.warnings[0]
    tiles = {(event.tile, event.tiles) for event in events if isinstance(event, Progress)}
    # 2 x 2 tiles, each visited twice a step: the progress names them.
    assert {tiles for _, tiles in tiles if tiles} == {8}
    assert max(tile for tile, _ in tiles) >= 2


def test_a_jobs_own_cap_travels_and_the_daemon_keeps_to_it(capped_daemon):
    # Far below what even the smallest tiles need at 480 px, and at the daemon's smallest retry.
    with capped_daemon.client() as client:
        events = read_all(
            client.submit(
                "capped",
                content_image(*SIZE)[0],
                [style_png()],
                JobParams(iterations=2, max_memory=0.05),
            )
        )
    error = events[-1]
    assert isinstance(error, Error) and error.code is ErrorCode.OUT_OF_MEMORY, error
    assert not any(isinstance(event, Progress) for event in events)  # refused before a step
