"""Weights: which file a model argument means, and how its tensors become a model's.

Names → files: catalog (the rows), locations (where files may already be), download (huggingface_hub), lookup
(the argument rule and lookup order). Files → models: checkpoint picks the reader for a layout (upstream_pth,
video_checkpoint, hf_layout), all sharing one key table (keys); kinds says relative or metric before loading.

Nothing is imported here: `dav2 models` reads the catalogue without loading torch.
"""
