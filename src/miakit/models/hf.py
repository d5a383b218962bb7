"""A Hugging Face transformers model as a miakit network (`model.arch: hf:<folder or hub id>`).

The base model is loaded once per process (`transformers.AutoModelFor<Task>.from_pretrained`
with `use_safetensors=True`, never `trust_remote_code`) and every model is a deep copy of it, so
that references are cheap to make; the weights the base lacks (a classifier's head, or one of
another class count, `ignore_mismatched_sizes`) are drawn anew from torch's global generator,
which the caller seeds per model, as the model's own `_init_weights` would (normal with std
`initializer_range`, zero biases). With `model.lora` the copy is wrapped by peft's LoRA
adapters (Hu et al. 2022), only they and the head trained (peft's sequence-classification task;
for images, which peft has no task for, the `classifier` module as a module to save).

`HFNet` takes, for the text tasks, token ids [B, L] padded with `miakit.data.text.HF_PAD`
(attention mask: the ids that are no padding; the model sees its tokenizer's pad or EOS id
there, `hf.fill_id`) and returns, for sequence-classification, class logits [B, C]; for
causal-lm, next-token logits [B, L − 1, V] (position t predicting token t + 1), as
`miakit.models.gpt.GPT`. For image-classification it takes images [B, C, H, W] normalized as
the model's image processor would (`miakit.hf.image_pool` gives the pool its mean and std),
resizes them to the processor's size with `torch.nn.functional.interpolate` (its resample
filter, antialiased as PIL's) and returns class logits [B, C]; resizing after normalizing
equals resizing first, as every filter's weights sum to one.
"""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from miakit import hf
from miakit.data.text import HF_PAD
from miakit.errors import MiakitError


class HFNet(nn.Module):
    """A transformers model over token ids [B, L] (`fill_id` fed at their padding) or, for
    image-classification, images [B, C, H, W] resized to `size` with interpolate's `resample`
    mode; see the module docstring for its outputs."""

    def __init__(
        self,
        model: nn.Module,
        task: str,
        fill_id: int | None = None,
        size: tuple[int, int] | None = None,
        resample: str = "bilinear",
    ):
        super().__init__()
        self.model, self.task, self.fill_id = model, task, fill_id
        self.size, self.resample = size, resample

    def forward(self, x: Tensor) -> Tensor:
        if self.task == hf.IMAGE_TASK:
            if self.size is not None and tuple(x.shape[-2:]) != self.size:
                smooth = self.resample in ("bilinear", "bicubic")
                x = F.interpolate(x, size=self.size, mode=self.resample, antialias=smooth)
            return self.model(pixel_values=x).logits
        inputs = x[:, :-1] if self.task == "causal-lm" else x
        real = inputs != HF_PAD
        ids = torch.where(real, inputs, self.fill_id)
        return self.model(input_ids=ids, attention_mask=real).logits


@cache
def _base(folder: str, identity: str, task: str, num_labels: int) -> tuple[nn.Module, frozenset]:
    """The base model in eval mode and the names of the parameters its files lack."""
    import transformers

    auto = {
        "sequence-classification": transformers.AutoModelForSequenceClassification,
        hf.IMAGE_TASK: transformers.AutoModelForImageClassification,
        "causal-lm": transformers.AutoModelForCausalLM,
    }[task]
    options: dict[str, Any] = {}
    if task != "causal-lm":  # a head of another class count is drawn anew, as a missing one
        options = {"num_labels": num_labels, "ignore_mismatched_sizes": True}
    try:
        # on the CPU, never the meta device of a parameter count; its own draws (of the weights
        # it lacks, drawn again per model) leave the caller's generator as it was
        with torch.device("cpu"), torch.random.fork_rng(devices=[]):
            model, info = auto.from_pretrained(
                folder,
                use_safetensors=True,
                trust_remote_code=False,
                output_loading_info=True,
                **options,
            )
    except (OSError, ValueError, KeyError) as exc:
        raise MiakitError(
            f"model.arch hf:{folder}: transformers cannot load it for {task} "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        ) from exc
    model.float().eval()
    mismatched = [key for key, *_ in info.get("mismatched_keys", ())]
    return model, frozenset([*info.get("missing_keys", ()), *mismatched])


def build_hf(arch: str, num_classes: int, task: str | None, lora: Any = None) -> HFNet:
    """A fresh copy of the arch's base model for `task` (num_classes labels for the
    classifiers), its missing weights drawn from torch's global generator, with LoRA adapters
    where `lora` (a `miakit.config.LoraConfig` or its dict) is given."""
    if task not in hf.HF_TASKS:
        raise MiakitError(f"model.task: {task!r}; an hf arch takes {', '.join(hf.HF_TASKS)}")
    hf.require_text_extra(f"model.arch {arch}")
    folder = hf.model_folder(arch, task)
    identity = str(sorted(hf.base_identity(folder).items()))
    base, missing = _base(str(folder.resolve()), identity, task, num_classes)
    model = copy.deepcopy(base)
    std = getattr(model.config, "initializer_range", 0.02)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in missing:
                nn.init.normal_(p, std=std) if p.ndim >= 2 else nn.init.zeros_(p)
    if lora is not None:
        model = _with_lora(model, task, lora if isinstance(lora, dict) else lora.model_dump())
    if task == hf.IMAGE_TASK:
        inputs = hf.image_inputs(folder, arch)
        return HFNet(model, task, size=inputs.size, resample=inputs.resample)
    fill = hf.fill_id(folder)
    if getattr(model.config, "pad_token_id", None) is None:
        # a decoder's sequence classifier finds each record's last token by the config's pad id
        model.config.pad_token_id = fill
    return HFNet(model, task, fill)


#: the head of transformers' image classifiers, which LoRA trains whole (peft's modules_to_save)
IMAGE_HEAD = "classifier"


def _with_lora(model: nn.Module, task: str, lora: dict) -> nn.Module:
    from peft import LoraConfig, TaskType, get_peft_model

    options: dict[str, Any] = {}
    if task == hf.IMAGE_TASK:  # peft has no image task: the head is named as a module to save
        if not isinstance(getattr(model, IMAGE_HEAD, None), nn.Module):
            raise MiakitError(
                f"model.lora: {type(model).__name__} has no `{IMAGE_HEAD}` head module, which "
                "LoRA would leave untrained; fine-tune every weight (no model.lora)"
            )
        options["modules_to_save"] = [IMAGE_HEAD]
    else:
        options["task_type"] = TaskType.CAUSAL_LM if task == "causal-lm" else TaskType.SEQ_CLS
    config = LoraConfig(
        **options,
        r=lora["r"],
        lora_alpha=lora["alpha"],
        target_modules=list(lora["target_modules"]),
        lora_dropout=0.0,
    )
    try:
        return get_peft_model(model, config)
    except ValueError as exc:
        raise MiakitError(f"model.lora: {str(exc).splitlines()[0]}") from exc
