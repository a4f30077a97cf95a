"""Depth in your own Ray Data pipelines: `map_batches(DepthPredictor, ...)` over `read_images` or
`read_binary_files` (docs/scale-out.md shows the pipeline).

The class imports nothing of Ray, so it is a plain callable too; its depth is `dav2 image`'s (same decoding,
same model, same prediction). For whole folders with dav2's names, formats and resume, use `dav2 folder --ray`.
"""

import numpy as np

__all__ = ["DepthPredictor"]


class DepthPredictor:
    """One model per actor, loaded once; each batch gets a `depth` column of float32 (H, W) arrays, and with
    `sky="mask"` a `sky` column of bool (H, W) masks (`sky` is `predict`'s: far, keep or mask).

    Batches from `read_images(..., include_paths=True)` carry decoded RGB pixels in `image` (an object array when
    sizes are mixed); batches from `read_binary_files(..., include_paths=True)` carry the file's `bytes`, which
    dav2 decodes as `dav2 image` does (EXIF orientation, 16-bit, alpha). Other columns pass through.
    """

    def __init__(self, model: str = "vits", device: str = "auto", dtype: str = "auto", backend: str = "auto",
                 input_size: int = 504, max_depth: float | None = None, sky: str = "far"):
        from dav2_cli.depth.sky import check_sky_mode
        from dav2_cli.runtime.loading import load_model

        self.sky = check_sky_mode(sky)
        self.model = load_model(model, device, dtype, max_depth=max_depth, backend=backend)
        self.input_size = input_size

    def __call__(self, batch: dict) -> dict:
        from dav2_cli.runtime.loading import predict

        images = [self._image(batch, index) for index in range(_rows(batch))]
        depth = np.empty(len(images), dtype=object)  # maps of mixed sizes: one array per row
        sky = np.empty(len(images), dtype=object)
        for index, image in enumerate(images):
            result = predict(self.model, image, self.input_size, sky=self.sky)
            depth[index], sky[index] = result if self.sky == "mask" else (result, None)
        return {**batch, "depth": depth, **({"sky": sky} if self.sky == "mask" else {})}

    @staticmethod
    def _image(batch: dict, index: int) -> np.ndarray:
        """Row `index` as the BGR pixels the model's preprocessing takes."""
        if "bytes" in batch:
            from dav2_cli.media.images import decode_image

            name = str(batch["path"][index]) if "path" in batch else f"row {index}"
            return decode_image(bytes(batch["bytes"][index]), name)
        image = np.asarray(batch["image"][index])
        if image.ndim == 2:
            return np.repeat(image[:, :, None], 3, axis=2)
        return np.ascontiguousarray(image[:, :, 2::-1])  # RGB(A) → BGR, alpha dropped


def _rows(batch: dict) -> int:
    return len(batch["bytes"] if "bytes" in batch else batch["image"])
