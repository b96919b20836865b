"""Decoding: plain and self-speculative (MTP heads as drafters) generation over a KV-cached model.

    gen = Generator(model, tokenizer, device)           # or decoding.hf.load_hf_generator(path)
    settings = SamplingSettings(temperature=0.8, top_p=0.95, max_new_tokens=512, speculative=4)
    for index, completions in gen.generate(requests, settings, batch_size=64):
        ...  # requests[index] is done: its n Completions, in seed order

Greedy self-speculative decoding returns exactly plain greedy's tokens; speculative sampling
keeps the model's distribution; every sample is a function of its seed alone (not of batching).
"""
from .generator import Generator
from .records import Completion, Request, SamplingSettings

__all__ = ["Completion", "Generator", "Request", "SamplingSettings"]
