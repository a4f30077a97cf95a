"""Checkpoints: where a model name's file comes from (catalog), and how its tensors become a model's (checkpoint,
hf_layout).

Nothing is imported here: `dav2 models` reads the catalogue without loading torch.
"""
