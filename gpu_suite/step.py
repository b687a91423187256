"""One optimisation iteration of the engine, built several ways, for the per-iteration part of
the GPU suite.

An iteration is what the engine's L-BFGS closure costs: the objective (VGG16 forward to
relu5_1, Gram matrices at relu1_1..relu5_1, content at relu4_2, total variation) and the
backward pass to the image (the network's weights need no gradients). Every variant computes
that same function on the same image; they differ in precision, memory layout and how the
kernels are launched. The optimiser's own update is not part of it.
"""

from __future__ import annotations

import contextlib
import copy
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from neural_style_daemon.bench.reference import plain_fp32
from neural_style_daemon.engine.losses import gram_matrix
from neural_style_daemon.engine.optimize import Objective
from neural_style_daemon.engine.params import StyleParams
from neural_style_daemon.engine.vgg import VGGFeatures

# (loss, gradient of the loss with respect to the image); both may be buffers that the next
# call overwrites (captured graphs): read them before calling again.
StepOutput = tuple[torch.Tensor, torch.Tensor]
Step = Callable[[], StepOutput]

# The engine's numerics: bf16 convolutions against an fp32 reference land between 1e-3 and
# 1e-2 in relative error; above this the fast path is computing something else.
BF16_TOLERANCE = 2e-2
FP32_TOLERANCE = 1e-4  # the same arithmetic, perhaps in another order


@dataclass(frozen=True)
class Variant:
    """One way of running the iteration."""

    name: str
    description: str
    bf16: bool  # bf16 autocast (else plain fp32: no TF32, no cuDNN autotuning)
    channels_last: bool
    compiled: bool = False  # through torch.compile
    cuda_graph: bool = False  # launched as one captured CUDA graph (manually, or by inductor)

    @property
    def tolerance(self) -> float:
        """The largest relative error of the image gradient against fp32 that passes."""
        return BF16_TOLERANCE if self.bf16 else FP32_TOLERANCE


VARIANTS = {
    v.name: v
    for v in (
        Variant(
            "fp32",
            "fp32, NCHW, no TF32, no cuDNN autotuning (the naive's numerics)",
            bf16=False,
            channels_last=False,
        ),
        Variant(
            "bf16-cl",
            "bf16 autocast + channels_last + cuDNN autotuning, eager (the "
            "engine's path on CUDA and on CPUs with bf16 units)",
            bf16=True,
            channels_last=True,
        ),
        Variant(
            "bf16-cl-graph",
            "the same, the whole iteration captured once as a CUDA graph and replayed",
            bf16=True,
            channels_last=True,
            cuda_graph=True,
        ),
        Variant(
            "bf16-cl-compile",
            "the same through torch.compile (no CUDA graphs)",
            bf16=True,
            channels_last=True,
            compiled=True,
        ),
        Variant(
            "bf16-cl-compile-graphs",
            "the same through torch.compile with CUDA graphs",
            bf16=True,
            channels_last=True,
            compiled=True,
            cuda_graph=True,
        ),
    )
}
COMPILED_VARIANTS = tuple(name for name, v in VARIANTS.items() if v.compiled)

# The torch.compile mode that adds CUDA graphs to each mode without them.
WITH_CUDA_GRAPHS = {"default": "reduce-overhead", "max-autotune-no-cudagraphs": "max-autotune"}


def skip_reason(variant: Variant, device: torch.device, backend: str) -> str | None:
    """Why `variant` cannot run here, or None."""
    if variant.cuda_graph and device.type != "cuda":
        return "CUDA graphs need a CUDA device"
    if variant.cuda_graph and variant.compiled and backend != "inductor":
        return f"CUDA graphs through torch.compile need the inductor backend, not {backend}"
    return None


def compile_mode(variant: Variant, mode: str) -> str:
    """The torch.compile mode of a compiled variant, given the suite's mode without graphs."""
    return WITH_CUDA_GRAPHS.get(mode, mode) if variant.cuda_graph else mode


def numerics(variant: Variant):
    """The backend settings a variant runs under: the naive's plain fp32, or the engine's
    (cuDNN autotuning on, as StyleEngine turns it on for CUDA; PyTorch's TF32 defaults)."""
    if not variant.bf16:
        return plain_fp32()
    return torch.backends.cudnn.flags(
        enabled=True, benchmark=True, deterministic=False, allow_tf32=True
    )


class StepProblem:
    """The objective at one size, on both memory layouts, and a seeded start image.

    The targets are computed once in plain fp32, so every variant optimises the same
    function and only the iteration's own arithmetic differs between them."""

    def __init__(
        self,
        vgg: VGGFeatures,
        content: torch.Tensor,
        style: torch.Tensor,
        start: torch.Tensor,
        params: StyleParams,
    ) -> None:
        self.device = content.device
        self.start = start.detach()  # 1 x 3 x H x W in [0, 1]
        self.models = {
            False: _layout(vgg, channels_last=False),
            True: _layout(vgg, channels_last=True),
        }
        model = self.models[False]
        with torch.no_grad(), plain_fp32():
            content_features = model(content, params.content_layers)
            style_features = model(style, params.style_layers)
            grams = {name: gram_matrix(f) for name, f in style_features.items()}
        self.objectives = {
            layout: Objective(m, content_features, grams, params)
            for layout, m in self.models.items()
        }

    def loss_function(self, variant: Variant) -> Callable[[torch.Tensor], torch.Tensor]:
        objective = self.objectives[variant.channels_last]
        if not variant.bf16:
            return lambda image: objective(image).total
        device_type = self.device.type

        def loss(image: torch.Tensor) -> torch.Tensor:
            # No autocast cache: CUDA graph capture needs it off (torch.cuda.graph's notes);
            # the weights need no gradient, so it would only have kept the image's cast.
            with torch.autocast(device_type, dtype=torch.bfloat16, cache_enabled=False):
                return objective(image).total

        return loss

    def image(self) -> torch.Tensor:
        """A fresh leaf copy of the start image that collects the gradient."""
        return self.start.clone().requires_grad_(True)


def _layout(vgg: VGGFeatures, *, channels_last: bool) -> VGGFeatures:
    """A copy of `vgg` with its weights (and activations) in NCHW or NHWC."""
    model = copy.deepcopy(vgg)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    model.channels_last = channels_last
    return model


def _gradient(image: torch.Tensor) -> torch.Tensor:
    """The image's gradient, which the backward pass just before has set."""
    assert image.grad is not None
    return image.grad


def eager_step(loss_fn: Callable[[torch.Tensor], torch.Tensor], image: torch.Tensor) -> Step:
    def step() -> StepOutput:
        image.grad = None
        loss = loss_fn(image)
        loss.backward()
        return loss.detach(), _gradient(image)

    return step


def graph_step(
    loss_fn: Callable[[torch.Tensor], torch.Tensor], image: torch.Tensor, warmup: int = 3
) -> Step:
    """The iteration captured as one CUDA graph: one launch per replay instead of hundreds.
    The image and the gradient live at fixed addresses; a real loop would copy the
    optimiser's new image into `image` before each replay (one small copy)."""
    side = torch.cuda.Stream(image.device)
    side.wait_stream(torch.cuda.current_stream(image.device))
    with torch.cuda.stream(side):  # warm-up (and cuDNN's autotuning) outside the capture
        for _ in range(warmup):
            image.grad = None
            loss_fn(image).backward()
    torch.cuda.current_stream(image.device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    image.grad = None
    with torch.cuda.graph(graph):
        static_loss = loss_fn(image)
        static_loss.backward()
    static_grad = _gradient(image)

    def step() -> StepOutput:
        graph.replay()
        return static_loss.detach(), static_grad

    return step


def compiled_step(
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    image: torch.Tensor,
    *,
    mode: str,
    backend: str,
    cuda_graphs: bool,
) -> Step:
    """The loss compiled once for this shape (dynamic=False: one static shape per pyramid
    scale, as the engine would keep them); AOTAutograd compiles its backward too."""
    # Every compiled variant's loss is the same Python function: without a reset, dynamo's
    # cache could hand this one the code compiled for another mode at the same size.
    torch._dynamo.reset()
    compiled = torch.compile(
        loss_fn,
        dynamic=False,
        backend=backend,
        mode=mode if backend == "inductor" else None,  # the modes are inductor's
    )
    mark_step = torch.compiler.cudagraph_mark_step_begin

    def step() -> StepOutput:
        if cuda_graphs:
            mark_step()  # each call is a new iteration: its outputs may be overwritten
        image.grad = None
        loss = compiled(image)
        loss.backward()
        return loss.detach(), _gradient(image)

    return step


def build_step(problem: StepProblem, variant: Variant, *, mode: str, backend: str) -> Step:
    """The variant's iteration on a fresh copy of the start image (nothing run yet, except a
    CUDA graph's warm-up and capture)."""
    loss_fn, image = problem.loss_function(variant), problem.image()
    if variant.compiled:
        return compiled_step(
            loss_fn,
            image,
            mode=compile_mode(variant, mode),
            backend=backend,
            cuda_graphs=variant.cuda_graph,
        )
    if variant.cuda_graph:
        return graph_step(loss_fn, image)
    return eager_step(loss_fn, image)


@contextlib.contextmanager
def private_compile_cache() -> Iterator[str]:
    """Inductor's and Triton's caches in a temporary folder, removed afterwards: compile times
    are then those of a first run (no cache from earlier runs), and nothing is left in /tmp."""
    names = ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR")
    saved = {name: os.environ.get(name) for name in names}
    with tempfile.TemporaryDirectory(
        prefix="neural-style-compile-", ignore_cleanup_errors=True
    ) as folder:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = folder
        os.environ["TRITON_CACHE_DIR"] = os.path.join(folder, "triton")
        try:
            yield folder
        finally:
            torch._dynamo.reset()  # drop the compiled code and its CUDA graph memory
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
