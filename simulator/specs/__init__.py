"""Bundled datasheet specs: models (Hugging Face config.json fields) and GPUs."""
