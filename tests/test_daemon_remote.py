"""`stylize` on a daemon, without one: which options keep a job in this process, how the others
become wire parameters, and the status text."""

from __future__ import annotations

import pytest

from neural_style_daemon.cli import _is_daemon_command, build_parser, parser_for
from neural_style_daemon.daemon_cli import format_status
from neural_style_daemon.errors import InvalidInputError
from neural_style_daemon.remote import job_params, local_only_options
from neural_style_protocol.connection import ConnectionInfo
from neural_style_protocol.messages import Progress, StatusReply, WorkerState
from neural_style_protocol.params import ColorMode, Optimizer, Preset


def stylize_args(*options: str):
    return build_parser().parse_args(
        ["stylize", "c.png", "s.png", "t.png", "-o", "o.png", *options]
    )


def test_plain_options_go_to_the_daemon() -> None:
    args = stylize_args(
        "--strength",
        "30",
        "--preset",
        "draft",
        "--iterations",
        "7",
        "--style-weights",
        "2,1",
        "--preserve-colors",
        "luminance",
        "--optimizer",
        "adam",
        "--seed",
        "5",
        "--size",
        "256",
    )
    assert local_only_options(args) == []
    params = job_params(args)
    assert params.strength == pytest.approx(30.0)
    assert (params.preset, params.iterations, params.size, params.seed) == (Preset.DRAFT, 7, 256, 5)
    assert params.style_weights == (2.0, 1.0)
    assert (params.preserve_colors, params.optimizer) == (ColorMode.LUMINANCE, Optimizer.ADAM)
    # A percentage, 1 included: 1 % is not the whole.
    assert job_params(stylize_args("--strength", "1")).strength == pytest.approx(1.0)


@pytest.mark.parametrize(
    "options, named",
    [
        (["--min-size", "64"], "--min-size"),
        (["--init", "start.png"], "--init PATH"),
        (["--style-layers", "all"], "--style-layers"),
        (["--lbfgs-history", "5"], "--lbfgs-history"),
        (["--weights", "random"], "--weights"),
        (["--device", "cpu"], "--device"),
        (["--save-every", "5"], "--save-every"),  # the daemon sends no image before the end
    ],
)
def test_options_only_this_process_honours_keep_the_job_here(
    options: list[str], named: str
) -> None:
    assert named in local_only_options(stylize_args(*options))


def test_values_the_wire_refuses_are_input_errors() -> None:
    with pytest.raises(InvalidInputError, match="iterations"):
        job_params(stylize_args("--iterations", "100000"))


@pytest.mark.parametrize(
    "argv, daemon",
    [
        (["status"], True),
        (["-v", "serve", "--device", "cpu"], True),
        (["stop"], True),
        (["stylize", "a", "b", "-o", "c.png"], False),
        (["--version"], False),
        ([], False),
    ],
)
def test_daemon_commands_are_told_apart_before_parsing(argv: list[str], daemon: bool) -> None:
    assert _is_daemon_command(argv) is daemon


def test_bench_has_its_options_only_when_it_is_the_command() -> None:
    assert parser_for(["bench", "--sizes", "64"]).parse_args(["bench", "--sizes", "64"]).sizes
    with pytest.raises(SystemExit):
        parser_for(["stylize"]).parse_args(["bench", "--sizes", "64"])


def test_the_status_text_names_the_essentials() -> None:
    info = ConnectionInfo("tcp://127.0.0.1:5599", "ab" * 16, 4242, "0.1.0")
    running = Progress("job-7", 3, 2, 3, 40, 100, 0.5, {"total": 1.0}, 12.0, 12.0)
    text = format_status(
        info, StatusReply("0.1.0", "cuda:0 (H100)", True, 3 << 30, 1, 8, WorkerState.BUSY, running)
    )
    for expected in (
        "pid 4242",
        "tcp://127.0.0.1:5599",
        "cuda:0 (H100); model loaded",
        "3072 MiB",
        "worker: busy",
        "1 waiting (limit 8)",
        "job job-7, scale 2/3, step 40/100, 50% done, about 12 s left",
    ):
        assert expected in text
