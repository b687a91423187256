"""L-BFGS over one image tensor, one evaluation per step and no line search, as Gatys-style
implementations run it (torch.optim.LBFGS with max_iter=1), with four departures:

- The first step moves the pixel with the largest gradient by `first_step` (image units, the
  image lives in [0, 1]). torch's first step is the gradient divided by its L1 norm, which for
  a whole image is a step far below one 8-bit level. The first curvature pair (s, y) is then
  measured over a step so small that y is mostly rounding: harmless in fp32, but under bf16
  autocast L-BFGS wandered off. With a first step of 0.1, bf16 converges as fp32 does
  (docs/benchmarks.md, "The engine's measured choices").
- s is the difference between the points actually evaluated, so a projection the caller
  applies before each evaluation (the engine clamps to [0, 1]) does not falsify the curvature.
- The direction comes from the compact representation of Byrd, Nocedal and Schnabel (1994),
  not the two-loop recursion: the same matrix H, applied with five matrix-vector products over
  the stacked history and a few m x m operations: a fixed number of calls into torch per
  direction whatever the history length, where the two-loop makes seven per kept pair (each a
  kernel launch on a GPU). The m x m part is in fp64.
- No host synchronisation: torch's two-loop reads a number back from the device for each
  history entry (2 x history syncs per step on CUDA). Here every scalar stays a device tensor;
  a pair without positive curvature is kept as zeros, which leave H as it is, instead of being
  tested for on the host.

The pairs can be stored in bf16 (`pair_dtype`), as the engine does on CUDA where the network
runs in bf16: half the memory (the history is nearly as large as the activations) and half
the traffic of the update, which reads the pairs seven times per step. The products over them
accumulate in fp32; the m x m matrices are built from the stored (rounded) pairs, so the
compact form stays consistent and converges as with fp32 pairs (docs/benchmarks.md).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

# Largest pixel change of the first step (image units).
FIRST_STEP = 0.1
# Below this s.y, a pair carries no usable curvature (torch's threshold).
MIN_CURVATURE = 1e-10


class LBFGS:
    """Minimises `closure()` over `image` (a leaf tensor with requires_grad), one evaluation
    per `step`. The closure evaluates the loss at the image as it is and back-propagates."""

    def __init__(
        self,
        image: torch.Tensor,
        *,
        history: int = 50,
        first_step: float = FIRST_STEP,
        pair_dtype: torch.dtype | None = None,
    ) -> None:
        self.image = image
        self.history = history
        self.first_step = first_step
        self.pair_dtype = pair_dtype or image.dtype  # the pairs' storage
        # The pairs as rows of S and Y (allocated with the first pair), filled in order and
        # then overwritten oldest first; `oldest` is the row of the oldest pair once full.
        self.s: torch.Tensor | None = None
        self.y: torch.Tensor | None = None
        self.pairs = 0
        self.oldest = 0
        # s_i . y_j and y_i . y_j by row, kept up to date one row and column per new pair.
        self.sy: torch.Tensor | None = None
        self.yy: torch.Tensor | None = None
        self.previous: tuple[torch.Tensor, torch.Tensor] | None = None  # (x, g) evaluated last
        self.gamma: torch.Tensor | None = None  # scale of the initial inverse Hessian

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.image.grad = None

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor]) -> torch.Tensor:
        with torch.enable_grad():
            loss = closure()
        grad = self.image.grad
        assert grad is not None, "the closure must call backward"
        x = self.image.detach().reshape(-1).clone()
        g = grad.reshape(-1).clone()
        if self.previous is None:
            # The first step's scale: max |gamma * g| = first_step.
            self.gamma = self.first_step / g.abs().max().clamp_min(torch.finfo(g.dtype).tiny)
        else:
            self._remember(x - self.previous[0], g - self.previous[1])
        self.previous = (x, g)
        self.image.add_(self._direction(g).view_as(self.image))
        return loss

    def _remember(self, s: torch.Tensor, y: torch.Tensor) -> None:
        ys = y.dot(s)
        curved = ys > MIN_CURVATURE
        # Without curvature (a flat or concave stretch, or a step the clamp undid) the pair is
        # kept as zeros, which the direction ignores: no read-back to decide on the host.
        s, y = torch.where(curved, s, 0.0), torch.where(curved, y, 0.0)
        assert self.gamma is not None  # set by the first step, before any pair
        self.gamma = torch.where(
            curved, ys / y.dot(y).clamp_min(torch.finfo(y.dtype).tiny), self.gamma
        )
        if self.s is None:
            # Empty: rows are read only once written, and untouched pages cost no memory.
            self.s = s.new_empty(self.history, s.numel(), dtype=self.pair_dtype)
            self.y = s.new_empty(self.history, s.numel(), dtype=self.pair_dtype)
            self.sy = s.new_zeros(self.history, self.history, dtype=torch.float64)
            self.yy = s.new_zeros(self.history, self.history, dtype=torch.float64)
        assert self.y is not None and self.sy is not None and self.yy is not None  # with self.s
        if self.pairs < self.history:
            row, self.pairs = self.pairs, self.pairs + 1
        else:
            row, self.oldest = self.oldest, (self.oldest + 1) % self.history
        self.s[row], self.y[row] = s, y
        s, y = self.s[row], self.y[row]  # as stored: the products below see what the direction will
        used = slice(0, self.pairs)
        self.sy[row, used] = (self.y[used] @ s).double()
        self.sy[used, row] = (self.s[used] @ y).double()
        self.yy[row, used] = self.yy[used, row] = (self.y[used] @ y).double()

    def _direction(self, g: torch.Tensor) -> torch.Tensor:
        """-H g, H in compact form: H = gamma I + [S  gamma Y] M [S; gamma Y]^T with
        M = [[R^-T (D + gamma Y^T Y) R^-1, -R^-T], [-R^-1, 0]], where R is the upper triangle
        of S^T Y and D its diagonal, the pairs in the order they were made."""
        assert self.gamma is not None  # set by every step before its direction
        if not self.pairs:
            return g * -self.gamma
        assert self.s is not None and self.y is not None  # allocated with the first pair
        assert self.sy is not None and self.yy is not None
        k, shift = self.pairs, -self.oldest  # rolling rows by `shift` puts them oldest first
        s, y = self.s[:k], self.y[:k]
        gamma = self.gamma.double()
        stored_g = g.to(self.pair_dtype)
        a = torch.roll((s @ stored_g).double(), shift)
        b = torch.roll((y @ stored_g).double(), shift)
        sy = torch.roll(self.sy[:k, :k], (shift, shift), (0, 1))
        yy = torch.roll(self.yy[:k, :k], (shift, shift), (0, 1))
        r = sy.triu()
        r.diagonal().clamp_min_(torch.finfo(r.dtype).tiny)  # a zero pair's row solves to 0
        u = torch.linalg.solve_triangular(r, a[:, None], upper=True)[:, 0]
        w = sy.diagonal() * u + gamma * (yy @ u) - gamma * b
        p = torch.linalg.solve_triangular(r.T, w[:, None], upper=False)[:, 0]
        hg = g * self.gamma + (torch.roll(p, -shift).to(s.dtype) @ s).to(g.dtype)
        hg -= (torch.roll(gamma * u, -shift).to(s.dtype) @ y).to(g.dtype)
        return hg.neg_()
