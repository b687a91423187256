"""One evaluation of the objective (clamp, forward, backward to the image) captured as a CUDA
graph per pyramid scale and replayed at each step: one launch instead of several hundred. At
512 px and below the eager step is bound by launching kernels, not by arithmetic
(docs/benchmarks.md, "The engine's measured choices", from ../shared/docs/gpu-baseline.md).

A replay recomputes the same kernels on the same addresses: the image is the optimiser's leaf
tensor, updated in place, and the loss, its terms and the gradient come back in buffers that
the next replay overwrites. A graph that cannot be captured, or whose first replay disagrees
with the eager evaluation of the same image, is not used: the scale runs eagerly and a warning
says why.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

log = logging.getLogger(__name__)

# (total loss, the loss terms stacked); the gradient lands in the image's .grad.
Evaluation = Callable[[], tuple[torch.Tensor, torch.Tensor]]

# Eager evaluations before the capture, on a side stream as capture requires: they run cuDNN's
# autotuning, whose trial allocations must not land in the graph.
WARMUP_EVALUATIONS = 3
# Largest relative difference between the replayed and the eager gradient of the same image:
# both run the same bf16 kernels, so anything near this means the graph computes something else.
AGREEMENT = 1e-2


def captured(evaluate: Evaluation, image: torch.Tensor) -> Evaluation | None:
    """`evaluate` (which reads `image` and sets `image.grad`) as a replayed CUDA graph, or None
    where it could not be captured faithfully."""
    device = image.device
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for _ in range(WARMUP_EVALUATIONS):
            eager_total, _terms = evaluate()
        assert image.grad is not None, "evaluate must set the image's gradient"
        eager_grad = image.grad.clone()
    torch.cuda.current_stream(device).wait_stream(side)

    graph = torch.cuda.CUDAGraph()
    image.grad = None  # the backward inside the capture allocates it in the graph's memory
    try:
        with torch.cuda.graph(graph):
            total, terms = evaluate()
    except Exception as error:  # whatever refused the capture, the eager step still works
        log.warning(
            "could not capture the step as a CUDA graph (%s: %s): running it eagerly",
            type(error).__name__,
            error,
        )
        image.grad = None
        return None
    grad = image.grad
    assert grad is not None, "evaluate must set the image's gradient"

    def replay() -> tuple[torch.Tensor, torch.Tensor]:
        graph.replay()
        image.grad = grad  # the optimiser may have set it to None in between
        return total, terms

    replay()
    difference = ((grad - eager_grad).norm() / eager_grad.norm().clamp_min(1e-30)).item()
    loss_difference = abs(total.item() - eager_total.item()) / max(abs(eager_total.item()), 1e-30)
    if not max(difference, loss_difference) <= AGREEMENT:  # NaN included
        log.warning(
            "the CUDA graph's step differs from the eager one (gradient %.3g, loss "
            "%.3g relative): running it eagerly",
            difference,
            loss_difference,
        )
        return None
    return replay
