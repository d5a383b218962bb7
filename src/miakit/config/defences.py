"""Settings of the defences an audit can apply to every model it trains (`defences.*`).

Part of the schema layer (`miakit.config`), below the defences that read it; a base of its own (not
`miakit.config.Section`), so the audit config can embed `DefenceConfig` without an import cycle.
Unknown keys are errors, as everywhere in miakit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from miakit.errors import MiakitError
from miakit.store import file_hash


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DPConfig(_Strict):
    """DP-SGD (Abadi et al. 2016): per-example clipping, Gaussian noise, Poisson sampling."""

    enabled: bool = False
    noise_multiplier: float | None = Field(
        default=None,
        gt=0,
        description="σ: noise std over the clipping norm; or give target_epsilon",
    )
    target_epsilon: float | None = Field(
        default=None, gt=0, description="ε to reach after all epochs; σ is then derived from it"
    )
    max_grad_norm: float = Field(default=1.0, gt=0, description="per-example clipping norm C")
    delta: float = Field(default=1e-5, gt=0, lt=1, description="δ; keep it below 1/N")
    accountant: Literal["rdp", "prv"] = Field(
        default="rdp", description="Opacus accountant: RDP (Mironov 2017) or PRV (Gopi et al. 2021)"
    )

    @model_validator(mode="after")
    def _one_noise_setting(self) -> DPConfig:
        if self.enabled and (self.noise_multiplier is None) == (self.target_epsilon is None):
            raise ValueError("dp.enabled: give exactly one of noise_multiplier and target_epsilon")
        return self


class LaplaceConfig(_Strict):
    """Last-layer KFAC Laplace approximation (Ritter et al. 2018; Kristiadi et al. 2020)."""

    enabled: bool = False
    prior_precision: float | Literal["auto"] = Field(
        default="auto", description="τ of the N(0, 1/τ) prior; 'auto': chosen by `selection`"
    )
    selection: Literal["nll", "marglik"] = Field(
        default="nll",
        description="auto τ: min. held-out NLL on a grid, or max. Laplace evidence (needs a MAP "
        "trained with matching weight decay; underconfident otherwise)",
    )
    predictive: Literal["probit", "mc"] = Field(
        default="probit", description="probit (MacKay 1992) or Monte Carlo over logits"
    )
    mc_samples: int = Field(default=100, ge=1, description="predictive 'mc': samples per record")

    @model_validator(mode="after")
    def _positive_precision(self) -> LaplaceConfig:
        if not isinstance(self.prior_precision, str) and self.prior_precision <= 0:
            raise ValueError("laplace.prior_precision must be > 0 or 'auto'")
        return self


class TransferConfig(_Strict):
    """Transfer learning: model.arch's network, frozen up to a cut, with a trained head on top.

    The frozen part (the extractor) is loaded from `weights` or pretrained by miakit on records
    disjoint from the pool; its outputs are computed once per run and shared by every model.
    """

    enabled: bool = False
    weights: Path | None = Field(
        default=None,
        description="a safetensors state dict of model.arch (its classifier may have any number "
        "of classes); default: pretrain the extractor on pretrain_data",
    )
    pretrain_data: str = Field(
        default="rest",
        description="'rest': the records data.subsample left out of the pool; or a registered "
        "data set whose records have the pool's shape",
    )
    pretrain_epochs: int = Field(default=10, ge=1, description="pretraining epochs (train recipe)")
    pretrain_records: int | None = Field(
        default=None, ge=1, description="pretrain on at most this many records (seeded draw)"
    )
    head: Literal["linear", "mlp"] = Field(
        default="linear", description="what is trained on the features: a linear layer or an MLP"
    )
    head_hidden: int = Field(default=256, ge=1, description="head 'mlp': its hidden width")
    fine_tune: Literal["none", "last_block"] = Field(
        default="none", description="last_block: also train the extractor's last block"
    )

    @property
    def cut(self) -> Literal["features", "before_last_block"]:
        """Where the network is split into its frozen and trained parts (miakit.models.split)."""
        return "features" if self.fine_tune == "none" else "before_last_block"

    def hash_inputs(self) -> dict[str, Any]:
        """What of this section changes a trained model: the weights file's content, not its path;
        the pretraining settings only where the extractor is pretrained."""
        if self.weights is None:
            return self.model_dump(mode="json", exclude={"weights"})
        if not Path(self.weights).is_file():
            raise MiakitError(
                f"defences.transfer.weights: {self.weights} does not exist; give the path of a "
                "safetensors file, or leave it unset to pretrain the extractor"
            )
        inputs = self.model_dump(
            mode="json", exclude={"weights", "pretrain_data", "pretrain_epochs", "pretrain_records"}
        )
        return {**inputs, "weights_sha256": file_hash(Path(self.weights))}


class DefenceConfig(_Strict):
    dp: DPConfig = Field(default_factory=DPConfig)
    temperature_scaling: bool = Field(
        default=False, description="divide logits by one T fitted on held-out NLL (Guo et al. 2017)"
    )
    laplace: LaplaceConfig = Field(default_factory=LaplaceConfig)
    apply_to: Literal["all", "targets", "references"] = Field(
        default="all", description="which models the defences are applied to"
    )
    transfer: TransferConfig = Field(default_factory=TransferConfig)

    @model_validator(mode="after")
    def _one_calibration(self) -> DefenceConfig:
        if self.temperature_scaling and self.laplace.enabled:
            raise ValueError("choose one calibration: temperature_scaling or laplace.enabled")
        return self

    @model_validator(mode="after")
    def _transfer_for_all(self) -> DefenceConfig:
        # shadows of another model family than the targets' would make a different study
        if self.transfer.enabled and self.apply_to != "all":
            raise ValueError(
                "transfer.enabled changes every model of the run: leave apply_to at 'all'"
            )
        return self
