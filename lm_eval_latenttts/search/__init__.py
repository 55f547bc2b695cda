"""Test-time search over latent trajectories guided by a LatentRM: best-of-N and beam search."""

from .beam import BeamSearchResult, rm_beam_search
from .best_of_n import BestOfNResult, best_of_n_generate, choose_best, latent_forward_passes_of

__all__ = [
    "BeamSearchResult",
    "rm_beam_search",
    "BestOfNResult",
    "best_of_n_generate",
    "choose_best",
    "latent_forward_passes_of",
]
