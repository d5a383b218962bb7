"""Seeds derived from (run seed, purpose, index), so every random draw is reproducible and independent."""

import hashlib

import numpy as np


def derive_seed(run_seed: int, purpose: str, index: int = 0) -> int:
    """A 63-bit seed that depends on all three inputs and on nothing else (not on call order)."""
    purpose_key = int.from_bytes(hashlib.sha256(purpose.encode()).digest()[:8], "little")
    state = np.random.SeedSequence([run_seed, purpose_key, index]).generate_state(2, np.uint32)
    return int(state[0]) << 31 | int(state[1]) >> 1


def rng(run_seed: int, purpose: str, index: int = 0) -> np.random.Generator:
    return np.random.default_rng(derive_seed(run_seed, purpose, index))
