"""Defences an audit can apply to the models it trains, to measure whether they reduce exposure.

DP-SGD changes training (`dp.train_private`); transfer learning changes what every model sees
and trains (`transfer`: a frozen extractor whose stored features the models share, read through
`miakit.features`); temperature scaling and last-layer Laplace change only the logits queried
afterwards (`temperature.temperature_scaled`, `laplace.fit_laplace`, both returning a module that
replaces the model at query time). Submodules are imported by name, so Opacus is only loaded
where DP-SGD is used.
"""

from miakit.config.defences import DefenceConfig, DPConfig, LaplaceConfig

__all__ = ["DPConfig", "DefenceConfig", "LaplaceConfig"]
