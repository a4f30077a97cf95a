"""Whether a run fits this machine's memory, decided before the model loads: the backend to load, or one line.

The estimate itself is memory.py's; this module weighs it against what the backends and attention forms would do
here, which is why it sits above both (form timing asks memory.py whether the matmul form's scores fit).
"""

import os

from dav2_cli.runtime import memory


def fitting_backend(model: str, device: str, dtype: str, backend: str, input_size: int, batch: int,
                    images_hw: list[tuple[int, int]], *, verbose: bool = False) -> str:
    """The backend to load for a run over images of `images_hw` (the largest grid decides): `backend` where the
    estimate fits, torch where auto's would not and torch's does; else UsageError with the one line. Called by the
    jobs before the model loads; DAV2_MEMORY_CHECK=off skips it (for measuring peaks, as benchmarks/ does)."""
    import sys

    from dav2_cli.depth import sizing
    from dav2_cli.errors import UsageError

    shape = memory.model_shape(model)
    if shape is None or not images_hw or os.environ.get("DAV2_MEMORY_CHECK", "").strip().lower() == "off":
        return backend
    from dav2_cli.runtime import backends, device as devices, form_tuning, precision as precisions

    torch_device = devices.resolve_device(device)
    if torch_device.type != "cpu":
        return backend
    precision = precisions.resolve_precision(dtype, torch_device)
    resolved = backends.resolve_backend(backend, torch_device, precision)
    matmul = form_tuning.attention_form(torch_device, precision) is form_tuning.tuned_attention_form
    if resolved not in ("torch", "openvino", "auto"):  # a backend not measured here: nothing to say about it
        return backend

    def grid(image_hw):
        height, width = sizing.model_size(image_hw, input_size)
        return height // 14, width // 14

    image_hw = max(images_hw, key=lambda hw: (grid(hw)[0] * grid(hw)[1], hw[0] * hw[1]))

    def needed(name: str) -> int:
        return memory.estimate(shape, name, precision, batch, grid(image_hw), image_hw[0] * image_hw[1],
                        matmul_attention=matmul)

    room = memory.available_bytes()
    usable = None if room is None else int(memory.HEADROOM * room)
    if verbose:
        shown = "unknown" if room is None else memory.describe(room)
        print(f"dav2: memory: about {memory.describe(needed(resolved))} at the peak ({shape.encoder}, {resolved}, "
              f"{precision}, batch {batch}, grid {grid(image_hw)[0]}x{grid(image_hw)[1]}); {shown} available",
              file=sys.stderr, flush=True)
    if usable is None or needed(resolved) <= usable:
        return backend
    if resolved == "auto" and needed("torch") <= usable:
        if verbose:
            print(f"dav2: memory: OpenVINO's attention would not fit at this size: running torch, about "
                  f"{memory.describe(needed('torch'))}", file=sys.stderr, flush=True)
        return "torch"
    kept = "torch" if resolved == "auto" else resolved
    fits = memory.largest_fitting_size(shape, kept, precision, batch, image_hw, usable, matmul_attention=matmul)
    hint = f"--input-size {fits} fits" if fits else "no --input-size fits; close other programs or use a smaller model"
    if resolved == "openvino" and needed("torch") <= usable:
        hint += f", or --backend torch (about {memory.describe(needed('torch'))})"
    where = " with OpenVINO" if resolved == "openvino" else ""
    raise UsageError(f"--input-size {input_size} needs about {memory.describe(needed(kept))} of memory{where} for a "
                     f"{image_hw[1]}x{image_hw[0]} image, and {memory.describe(room)} is available; {hint}")
