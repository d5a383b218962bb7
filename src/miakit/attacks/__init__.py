"""Membership inference attacks; importing this package registers every attack."""

from miakit.attacks import lira, loss
from miakit.attacks.base import ATTACKS, Attack, AttackConfig, make_attack, register

__all__ = ["ATTACKS", "Attack", "AttackConfig", "lira", "loss", "make_attack", "register"]
