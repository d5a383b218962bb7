"""Write a tiny Hugging Face model folder and a labelled corpus for `configs/text_classifier.yaml`.

    python examples/tiny_hf_model.py tiny-bert corpus.jsonl
    python examples/tiny_hf_model.py tiny-gpt2 corpus.jsonl --task causal-lm
    python examples/tiny_hf_model.py tiny-vit --task image-classification

The folder holds a 2-layer BERT (width 32; random weights, as a stand-in for a pretrained
model one would download) saved as safetensors, and a word-level tokenizer trained on the
corpus with the `tokenizers` library (a PreTrainedTokenizerFast with [PAD], [UNK], [CLS],
[SEP]); with --task causal-lm, a 2-layer GPT-2 whose tokenizer frames records as [BOS] …
[EOS]; with --task image-classification, a 2-layer ViT of 3 channels at 16×16 pixels (no
corpus; its preprocessor_config.json resizes and normalizes the pool's images). The corpus is
`records` short sentences in .jsonl with a `label` (0: about weather,
1: about food), each with a random serial number, and one in five labelled wrongly: a model
fits those only by memorizing them, which is the membership signal an audit finds. Needs the text extra (pip install 'miakit[text]'); downloads nothing.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

SUBJECTS = (
    ("the rain", "a storm", "the wind", "the fog", "snow", "the sun"),
    ("the soup", "a pie", "the bread", "rice", "the cake", "a salad"),
)
VERBS = ("was", "seemed", "felt", "looked")
WORDS = ("cold", "warm", "heavy", "light", "strange", "fine", "sweet", "grey")


def write_corpus(path: Path, records: int = 200, seed: int = 0) -> list[dict]:
    """`records` labelled sentences as .jsonl (`text`, `label`); returns them."""
    rng = random.Random(seed)
    rows = []
    for i in range(records):
        topic = i % 2
        label = 1 - topic if rng.random() < 0.2 else topic
        text = (
            f"{rng.choice(SUBJECTS[topic])} {rng.choice(VERBS)} {rng.choice(WORDS)} "
            f"today , note {rng.randrange(10**6):06d}"
        )
        rows.append({"text": text, "label": label})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return rows


def _tokenizer(texts: list[str], start: str, end: str):
    """A word-level tokenizer trained on `texts` (lowercased ones too) that frames every
    record as start … end, with [PAD] and [UNK]."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    special = ["[PAD]", "[UNK]", start, end]
    raw = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    words = [*texts, *(t.lower() for t in texts)]
    raw.train_from_iterator(words, trainers.WordLevelTrainer(special_tokens=special))
    raw.post_processor = processors.TemplateProcessing(
        single=f"{start} $A {end}", special_tokens=[(t, raw.token_to_id(t)) for t in special[2:]]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=raw, pad_token="[PAD]", unk_token="[UNK]", model_max_length=64
    )


def write_causal_model(folder: Path, texts: list[str], width: int = 32, layers: int = 2) -> None:
    """A tiny GPT-2 and a word-level tokenizer trained on `texts`, saved in `folder`."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = _tokenizer(texts, "[BOS]", "[EOS]")
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=64,
        n_embd=width,
        n_layer=layers,
        n_head=2,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=tokenizer.convert_tokens_to_ids("[BOS]"),
        eos_token_id=tokenizer.convert_tokens_to_ids("[EOS]"),
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    GPT2LMHeadModel(config).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)


def write_model(folder: Path, texts: list[str], width: int = 32, layers: int = 2) -> None:
    """A tiny BERT and a word-level tokenizer trained on `texts`, saved in `folder`."""
    from transformers import BertConfig, BertForSequenceClassification

    tokenizer = _tokenizer(texts, "[CLS]", "[SEP]")
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=width,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=2 * width,
        max_position_embeddings=64,
        pad_token_id=tokenizer.pad_token_id,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    import torch

    torch.manual_seed(0)
    BertForSequenceClassification(config).bert.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)


#: the image processor's settings of `write_image_model`'s ViT, as ViTImageProcessor saves them
IMAGE_PROCESSOR = {
    "image_processor_type": "ViTImageProcessor",
    "do_resize": True,
    "size": {"height": 16, "width": 16},
    "resample": 2,
    "do_rescale": True,
    "rescale_factor": 1 / 255,
    "do_normalize": True,
    "image_mean": [0.5, 0.5, 0.5],
    "image_std": [0.5, 0.5, 0.5],
}


def write_image_model(
    folder: Path,
    processor: dict | None = IMAGE_PROCESSOR,
    image_size: int = 16,
    channels: int = 3,
    width: int = 32,
    layers: int = 2,
) -> None:
    """A tiny ViT without its classifier head (patches of 4 pixels) and, unless `processor` is
    None, its image processor's settings (preprocessor_config.json), saved in `folder`."""
    import torch
    from transformers import ViTConfig, ViTModel

    config = ViTConfig(
        image_size=image_size,
        patch_size=4,
        num_channels=channels,
        hidden_size=width,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=2 * width,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    torch.manual_seed(0)
    ViTModel(config, add_pooling_layer=False).save_pretrained(folder, safe_serialization=True)
    if processor is not None:
        (folder / "preprocessor_config.json").write_text(json.dumps(processor, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="the model folder to write")
    parser.add_argument("corpus", type=Path, nargs="?", help="the .jsonl corpus to write")
    parser.add_argument("--records", type=int, default=200)
    parser.add_argument(
        "--task",
        choices=("sequence-classification", "causal-lm", "image-classification"),
        default="sequence-classification",
        help="a BERT classifier's body, a GPT-2 causal language model, or a ViT's body",
    )
    args = parser.parse_args()
    if args.task == "image-classification":
        write_image_model(args.folder)
        print(f"wrote {args.folder}/")
        return
    if args.corpus is None:
        parser.error(f"--task {args.task} needs the corpus to write")
    rows = write_corpus(args.corpus, args.records)
    write = write_model if args.task == "sequence-classification" else write_causal_model
    write(args.folder, [r["text"] for r in rows])
    print(f"wrote {args.folder}/ and {args.corpus} ({len(rows)} records)")


if __name__ == "__main__":
    main()
