"""Where the randomness of a latent rollout comes from: Monte Carlo dropout and Gaussian noise.

Every random number is a pure function of a *row key*, the position id of
the token being computed, the dropout site (or the noise) and the feature
index -- a counter-based generator in the spirit of Philox/Threefry, built
from the SplitMix64 finaliser on int64 tensors.  Nothing is drawn from a
stateful ``torch.Generator``, so a rollout does not depend on which other rows
share its batch, on the batch size, on padding, on how many processes run or
on the device: the key of a row is derived from (seed, prompt tokens, sample
index) only (see ``LatentGenerationMixin.prepare_rollout``).

Only torch is imported: this file is copied next to saved checkpoints for
``trust_remote_code`` loading.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
from collections.abc import Iterator, Sequence

import torch
from torch import nn

_MASK64 = (1 << 64) - 1
_M1 = 0xBF58476D1CE4E5B9 - (1 << 64)  # SplitMix64 multipliers, as signed int64
_M2 = 0x94D049BB133111EB - (1 << 64)
_GOLDEN = 0x9E3779B97F4A7C15 - (1 << 64)
_NOISE_SITE = -1  # the "site" of the Gaussian noise on fed-back latents
_TWO_PI = 2.0 * math.pi


def _shr(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Logical right shift of int64 values (torch's ``>>`` is arithmetic)."""
    return (x >> bits) & ((1 << (64 - bits)) - 1)


def mix64(x: torch.Tensor) -> torch.Tensor:
    """SplitMix64 finaliser on an int64 tensor (wrapping arithmetic): a bijective, well-mixed hash."""
    x = (x ^ _shr(x, 30)) * _M1
    x = (x ^ _shr(x, 27)) * _M2
    return x ^ _shr(x, 31)


def fold(keys: torch.Tensor, values: torch.Tensor | int) -> torch.Tensor:
    """Derive new keys from ``keys`` and integers ``values`` (broadcast): a child key per (key, value)."""
    values = torch.as_tensor(values, dtype=torch.int64, device=keys.device)
    return mix64(keys ^ mix64(values * _GOLDEN + _M2))


def key_from_ints(*ints: int) -> int:
    """A 64-bit key (as a signed int) from Python integers, e.g. (seed, question id); platform independent."""
    data = b"".join(int(i).to_bytes(16, "little", signed=True) for i in ints)
    value = int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")
    return value - (1 << 64) if value >= (1 << 63) else value


def token_key(seed: int, token_ids: Sequence[int]) -> int:
    """The key of a question: a function of the seed and its (unpadded) prompt token ids only."""
    data = int(seed).to_bytes(16, "little", signed=True) + b"".join(
        int(t).to_bytes(8, "little", signed=True) for t in token_ids
    )
    value = int.from_bytes(hashlib.blake2b(data, digest_size=8, person=b"latent-tts-q").digest(), "little")
    return value - (1 << 64) if value >= (1 << 63) else value


def _uniform24(bits: torch.Tensor, shift: int) -> torch.Tensor:
    """24 bits of ``bits`` starting at ``shift`` as a float32 in [0, 1) (exact in float32)."""
    return (_shr(bits, shift) & 0xFFFFFF).to(torch.float32) * (1.0 / (1 << 24))


def element_bits(position_keys: torch.Tensor, site: int, features: int) -> torch.Tensor:
    """64 random bits per element: (rows, seq) position keys -> (rows, seq, features) int64."""
    base = fold(position_keys, site)
    offsets = torch.arange(features, dtype=torch.int64, device=base.device) * _GOLDEN
    return mix64(base[..., None] + offsets)


def _element_top24_biased(position_keys: torch.Tensor, site: int, features: int) -> torch.Tensor:
    """``element_bits``' top 24 bits (bits 40..63), in place in one buffer, as int64 values ``(u << 40) - 2**63``
    (plus lower bits that do not change the order): ``u >= t`` is ``value >= (t << 40) - 2**63``.

    mix64's last step (``x ^ (x >>> 31)``) leaves bits 40..63 as they are, so it is skipped; the same bits as
    ``_shr(element_bits(...), 40)`` with two temporaries instead of about twenty.
    """
    x = fold(position_keys, site)[..., None] + torch.arange(features, dtype=torch.int64,
                                                            device=position_keys.device) * _GOLDEN
    shifted = torch.empty_like(x)
    for bits, multiplier in ((30, _M1), (27, _M2)):
        torch.bitwise_right_shift(x, bits, out=shifted)  # logical shift: arithmetic, then the sign bits cleared
        shifted &= (1 << (64 - bits)) - 1
        x ^= shifted
        x *= multiplier
    x ^= -(1 << 63)  # unsigned order as signed order
    return x


def dropout_scale(kept: torch.Tensor, p: float, dtype: torch.dtype) -> torch.Tensor:
    """What an output is multiplied by for a dropout of ``p``: ``kept / (1 - p)`` in ``dtype`` (0 where dropped)."""
    return kept.to(dtype) / (1.0 - p)


def keyed_dropout_scale(position_keys: torch.Tensor, site: int, features: int, p: float,
                        dtype: torch.dtype) -> torch.Tensor:
    """``dropout_scale(keyed_uniform(position_keys, site, features) >= p, p, dtype)``, bit for bit, without
    the uniform floats: ``u = i / 2**24 >= p`` (``p`` rounded to float32, as the comparison does) is
    ``i >= ceil(float32(p) * 2**24)``."""
    threshold = math.ceil(torch.tensor(p, dtype=torch.float32).item() * (1 << 24))
    if threshold >= 1 << 24:  # every element dropped
        kept = torch.zeros(*position_keys.shape, features, dtype=torch.bool, device=position_keys.device)
    else:
        kept = _element_top24_biased(position_keys, site, features) >= (threshold << 40) - (1 << 63)
    return dropout_scale(kept, p, dtype)


def keyed_uniform(position_keys: torch.Tensor, site: int, features: int) -> torch.Tensor:
    """Uniform [0, 1) float32 of shape (rows, seq, features), keyed by position keys and site."""
    return _uniform24(element_bits(position_keys, site, features), 40)


def keyed_normal(position_keys: torch.Tensor, site: int, features: int) -> torch.Tensor:
    """Standard normal float32 of shape (rows, seq, features) (Box-Muller on two 24-bit uniforms)."""
    bits = element_bits(position_keys, site, features)
    u1 = _uniform24(bits, 40) + (0.5 / (1 << 24))  # in (0, 1): log is finite
    u2 = _uniform24(bits, 16)
    return torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(_TWO_PI * u2)


class LatentSampler:
    """The sampling settings of a rollout and the dropout hooks that apply them.

    Dropout is applied by forward hooks on the backbone's dropout sites (GPT-2:
    the residual dropouts; Llama: the output of each MLP ``down_proj``) rather
    than by switching modules to train mode, so attention/embedding dropout
    stay off.  Before each forward pass the model calls :meth:`at` with the
    rows' keys and position ids; the hooks and :meth:`perturb` draw from those.
    """

    def __init__(self, config) -> None:
        """``config``: a validated ``LatentGenerationConfig`` resolved for the backbone (``for_backbone``)."""
        self.mode = config.latent_sampling
        self.dropout_p = float(config.dropout_p or 0.0)
        self.noise_std = float(config.noise_std or 0.0)
        self.dropout_scope = config.dropout_scope
        self._dropout_on = False
        self._row_keys: torch.Tensor | None = None
        self._positions: torch.Tensor | None = None
        self._position_keys: torch.Tensor | None = None

    @property
    def uses_dropout(self) -> bool:
        return self.mode == "dropout" and self.dropout_p > 0

    @property
    def uses_noise(self) -> bool:
        return self.mode == "noise" and self.noise_std > 0

    @property
    def prompt_is_deterministic(self) -> bool:
        """True when the prompt pass gives the same cache for every sample."""
        return not self.uses_dropout or self.dropout_scope == "latent"

    # -- keys of the forward pass about to run -------------------------------------------
    def at(self, row_keys: torch.Tensor, positions: torch.Tensor) -> None:
        """Set the keys of the next forward pass: (rows,) row keys and (rows, seq) position ids."""
        self._row_keys, self._positions, self._position_keys = row_keys, positions, None

    def _keys(self) -> torch.Tensor:
        if self._row_keys is None:
            raise RuntimeError("LatentSampler: no row keys set for this forward pass (call sampler.at(...)).")
        if self._position_keys is None:
            self._position_keys = fold(self._row_keys[:, None], self._positions)
        return self._position_keys

    # -- dropout -----------------------------------------------------------------------------
    @contextlib.contextmanager
    def attached(self, model: nn.Module) -> Iterator["LatentSampler"]:
        """Install the dropout hooks on ``model`` for the duration of a rollout."""
        handles = []
        if self.uses_dropout:
            sites = model.dropout_sites()
            if not sites:
                raise ValueError(
                    f"{type(model).__name__} has no dropout sites, so latent_sampling='dropout' cannot "
                    "perturb it; use latent_sampling='noise' instead."
                )
            handles = [site.register_forward_hook(self._dropout_hook(i)) for i, site in enumerate(sites)]
        try:
            yield self
        finally:
            for handle in handles:
                handle.remove()
            self._dropout_on = False
            self._row_keys = self._positions = self._position_keys = None

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Switch dropout for a phase: 'prompt', 'latent' or 'answer' (always off)."""
        previous = self._dropout_on
        if name == "prompt":
            self._dropout_on = self.uses_dropout and self.dropout_scope == "all"
        elif name == "latent":
            self._dropout_on = self.uses_dropout
        else:
            self._dropout_on = False
        try:
            yield
        finally:
            self._dropout_on = previous

    def _dropout_hook(self, site: int):
        def hook(module, inputs, output):
            if not self._dropout_on:
                return output
            keys = self._keys()
            if tuple(keys.shape) != tuple(output.shape[:2]):
                raise RuntimeError(
                    f"dropout site output {tuple(output.shape)} does not match the keys {tuple(keys.shape)} "
                    "of the forward pass"
                )
            return output * keyed_dropout_scale(keys.to(output.device), site, output.shape[-1], self.dropout_p,
                                                output.dtype)

        return hook

    # -- noise -------------------------------------------------------------------------------
    def perturb(self, latent: torch.Tensor, row_keys: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Add N(0, noise_std^2) to fed-back latents (rows, hidden), keyed by the slot they are fed into."""
        if not self.uses_noise:
            return latent
        keys = fold(row_keys[:, None], positions[:, None])
        noise = keyed_normal(keys, _NOISE_SITE, latent.shape[-1])[:, 0]
        return latent + (noise * self.noise_std).to(latent.dtype)


__all__ = [
    "LatentSampler",
    "fold",
    "key_from_ints",
    "keyed_normal",
    "keyed_uniform",
    "mix64",
    "token_key",
]
