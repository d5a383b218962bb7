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


def raising_net(input_shape, num_classes):
    raise ValueError("width must be even")


def wrong_classes_net(input_shape, num_classes):
    return nn.Sequential(nn.Flatten(), nn.Linear(input_shape[0], num_classes + 3))


def wrong_input_net(input_shape, num_classes):
    return nn.Sequential(nn.Linear(input_shape[0] + 1, num_classes))


class _Unflatten(nn.Module):
    def forward(self, x):
        return x[:, None, :]


def three_d_net(input_shape, num_classes):
    return nn.Sequential(nn.Linear(input_shape[0], num_classes), _Unflatten())


def parameterless_net(input_shape, num_classes):
    return nn.Sequential(nn.Flatten(), nn.Identity())
