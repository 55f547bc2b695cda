"""A probe that reads a latent as a number 0..99, or as "no number" when it is unsure.

The logit lens can name one digit per latent at most, so the evidence reads a
latent's intermediate with a trained probe instead; a threshold on the
probe's top probability, chosen on held-out greedy latents, tells a latent
that names a value from one that names none (:data:`NO_NUMBER`).
"""

from __future__ import annotations

import math

import torch

from lm_eval_latenttts.data.arith import MOD

NO_NUMBER = -1  # what a read-out returns for a latent that names no number


class LatentProbe(torch.nn.Module):
    """A 100-way read-out of one latent step: standardise, then linear (``hidden=0``) or one-hidden-layer MLP.

    ``decode(z, threshold)`` gives the argmax value, or :data:`NO_NUMBER`
    where the top probability is below ``threshold``.
    """

    def __init__(self, dim: int, classes: int = MOD, hidden: int = 0):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))
        if hidden:
            self.net = torch.nn.Sequential(torch.nn.Linear(dim, hidden), torch.nn.GELU(), torch.nn.Linear(hidden, classes))
        else:
            self.net = torch.nn.Linear(dim, classes)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net((z.float() - self.mean) / self.std)

    @torch.no_grad()
    def proba(self, z: torch.Tensor) -> torch.Tensor:
        return self(z).softmax(-1)

    @torch.no_grad()
    def decode(self, z: torch.Tensor, threshold: float = 0.0):
        """``(values, top_probability)``; values are :data:`NO_NUMBER` where top probability < threshold."""
        p = self.proba(z)
        top, value = p.max(-1)
        value = torch.where(top < threshold, torch.full_like(value, NO_NUMBER), value)
        return value, top


def fit_probe(z: torch.Tensor, y: torch.Tensor, hidden: int = 0, epochs: int = 60, batch_size: int = 256,
              lr: float = 3e-3, seed: int = 0, classes: int = MOD, lbfgs_iters: int = 300,
              l2: float = 1e-5) -> LatentProbe:
    """Train a :class:`LatentProbe` on latents ``z`` (rows, d) and integer targets ``y`` (rows,).

    Linear (``hidden=0``): full-batch L-BFGS (``lbfgs_iters``, L2 ``l2``), i.e.
    multinomial logistic regression to convergence.  MLP: Adam, ``epochs``
    passes of ``batch_size`` with a cosine learning-rate decay.
    """
    z = z.float()
    probe = LatentProbe(z.shape[-1], classes, hidden)
    probe.mean.copy_(z.mean(0))
    probe.std.copy_(z.std(0).clamp_min(1e-6))
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        probe.net.apply(lambda m: m.reset_parameters() if isinstance(m, torch.nn.Linear) else None)
    probe.train()
    if not hidden:
        opt = torch.optim.LBFGS(probe.net.parameters(), lr=1, max_iter=lbfgs_iters, history_size=20,
                                line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(probe(z), y) + l2 * probe.net.weight.pow(2).sum()
            loss.backward()
            return loss

        opt.step(closure)
        probe.eval()
        return probe
    opt = torch.optim.Adam(probe.net.parameters(), lr=lr)
    steps_per_epoch = max(1, math.ceil(len(z) / batch_size))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * steps_per_epoch)
    for _ in range(epochs):
        perm = torch.randperm(len(z), generator=g)
        for b in range(0, len(z), batch_size):
            i = perm[b:b + batch_size]
            loss = torch.nn.functional.cross_entropy(probe(z[i]), y[i])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    probe.eval()
    return probe


def threshold_from_heldout(top_probability: torch.Tensor, quantile: float = 0.05, cap: float = 1.0) -> float:
    """The ``quantile`` of the probe's top probability on held-out greedy latents, at most ``cap``.

    A latent whose top probability is below it is less sure of any value than
    ``1 - quantile`` of the model's own greedy latents, and counts as
    "decodes to no number"; greedy latents are then (about) ``quantile``
    unstructured by construction, which is the baseline a sampling setting is
    compared to.  ``cap`` (the benchmark uses 0.5: "no value has the majority
    of the probability") keeps a saturated probe, sure of almost every greedy
    latent, from calling a latent whose read-out is still a clear majority
    "no number".
    """
    v = top_probability.float().flatten().sort().values
    if len(v) == 0:
        raise ValueError("no held-out latents")
    # lower empirical quantile: the largest value with at most `quantile` of the values strictly below it
    k = int(math.floor(quantile * len(v)))
    return min(float(v[min(k, len(v) - 1)]), cap)
