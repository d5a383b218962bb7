"""The reference language model of the `lm-ratio` attack: the hf target's pretrained base model
(`model.arch: hf:<folder>`, task causal-lm), not fine-tuned, queried once per run on every pool
record (`miakit.query.query_tokens`).

Stored as a run-level token statistic: reference_lm/token_logprobs.npy, float32 [N, L − 1], log p
of each actual next token (NaN at padding), and reference_lm/meta.json with the base model's
identity (`miakit.hf.base_identity`), the pool's fingerprint and the file's stamp; a file whose
stamp, base or pool differ is computed again.
"""

from __future__ import annotations

import json

import numpy as np

from miakit.store import (
    RunDir,
    content_hash,
    file_stamp,
    load_npy,
    save_json,
    save_npy,
    stamped_hash,
)


def reference_logprobs(run: RunDir, plan) -> np.ndarray:
    """The base model's token log-probs [N, L − 1] (float32) of every pool record of `plan`
    (a `miakit.plan.Plan` of an hf causal LM), from the run when current, else computed and
    stored."""
    from miakit import hf

    model = plan.config.model
    path = run.reference_lm
    folder, meta_path = path.parent, path.parent / "meta.json"
    expected = {
        "base": content_hash(hf.base_identity(hf.model_folder(model.arch, model.task))),
        "pool": plan.fingerprint,
    }
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        current = {k: meta.get(k) for k in expected} == expected
        stamp = meta.get("file") or {}
        if current and stamped_hash(path, stamp) == stamp.get("sha256"):
            return load_npy(path)
    logprobs = _query_base(plan)
    folder.mkdir(exist_ok=True)
    meta_path.unlink(missing_ok=True)
    save_npy(path, logprobs)
    save_json(meta_path, {**expected, "file": file_stamp(path)})
    return logprobs


def _query_base(plan) -> np.ndarray:
    import torch

    from miakit.models.hf import build_hf
    from miakit.query import query_tokens

    model = plan.config.model
    net = build_hf(model.arch, plan.pool.num_classes, model.task)  # no LoRA: the base itself
    x = torch.from_numpy(plan.pool.x)
    lower = None if plan.pool.x_lower is None else torch.from_numpy(plan.pool.x_lower)
    _, stats = query_tokens(net, x, pad=plan.pool.pad_id, lower=lower)
    return stats["token_logprobs"]
