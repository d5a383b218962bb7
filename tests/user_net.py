"""A user's own torch module for the tests of `model.arch: python:tests.user_net:make_net`."""

from torch import nn


def make_net(input_shape, num_classes):
    """A small MLP on feature vectors of `input_shape` (D,)."""
    width = 1
    for size in input_shape:
        width *= size
    return nn.Sequential(nn.Flatten(), nn.Linear(width, 24), nn.ReLU(), nn.Linear(24, num_classes))


def not_a_module(input_shape, num_classes):
    return [input_shape, num_classes]
