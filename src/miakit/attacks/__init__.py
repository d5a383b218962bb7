"""Membership inference attacks; importing this package registers every attack."""

from miakit.attacks import confidence, learned, lira, loss, lt_iqr, reference, rmia, threshold
from miakit.attacks.base import ATTACKS, Attack, AttackConfig, make_attack, register

__all__ = [
    "ATTACKS",
    "Attack",
    "AttackConfig",
    "confidence",
    "learned",
    "lira",
    "loss",
    "lt_iqr",
    "make_attack",
    "reference",
    "register",
    "rmia",
    "threshold",
]
