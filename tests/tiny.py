"""Shared builders for unit tests: the tiny policy config and a normaliser fitted on in-bound actions."""

from __future__ import annotations

import numpy as np
import torch

from vla_runtime.policy.config import PolicyConfig
from vla_runtime.policy.normalize import Normalizer

TINY = PolicyConfig(image_size=(16, 16), vision_channels=(8, 8, 8), vision_groups=4, keypoints=4, d_model=32,
                    dit_layers=2, dit_heads=2, train_timesteps=20, inference_steps=4)


def uniform_normalizer(n: int = 64, seed: int = 0) -> Normalizer:
    """Fitted on n actions uniform within the ActionSpec bounds and n standard-normal proprio vectors."""
    spec = TINY.action_spec
    rng = np.random.default_rng(seed)
    return Normalizer.fit(rng.uniform(spec.low_array(), spec.high_array(), (n, spec.dim)).astype(np.float32),
                          rng.normal(size=(n, TINY.proprio_dim)).astype(np.float32))


def tiny_llava(folder) -> str:
    """A randomly initialised LLaVA (1-layer CLIP + 2-layer Llama, character tokenizer) saved with its processor
    in `folder`: the real transformers classes at a size a unit test can run, nothing downloaded."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import CLIPImageProcessorPil as CLIPImageProcessor  # no torchvision here
    from transformers import (
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
        PreTrainedTokenizerFast,
    )

    vocab = {"<pad>": 0, "<unk>": 1, "<s>": 2, "</s>": 3, "<image>": 4}
    for c in "abcdefghijklmnopqrstuvwxyz0123456789.-=;:,|_?! ":
        vocab.setdefault(c, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", "isolated")  # one token per character
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", bos_token="<s>",
                                        eos_token="</s>", extra_special_tokens={"image_token": "<image>"})
    vision = CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                              image_size=16, patch_size=8)
    text = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=2048, pad_token_id=0)
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(LlavaConfig(vision_config=vision, text_config=text, image_token_index=4))
    processor = LlavaProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 16},
                                                                  crop_size={"height": 16, "width": 16}),
                               tokenizer=tokenizer, patch_size=8, vision_feature_select_strategy="full",
                               num_additional_image_tokens=0)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return str(folder)
