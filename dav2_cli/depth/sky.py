"""What becomes of sky pixels (`--sky keep|far|mask`): the one place the user's choice is applied.

Sky has no depth, and a sky-head model's raw values there are arbitrary (DA3's are often nearer than the
horizon), so by default (`far`) each sky pixel gets its image's farthest other depth (model/head.py's rule):
pictures draw sky as the farthest thing, stereo puts it behind everything, and alignment is not pulled by it.
`keep` leaves the network's raw depth; `mask` is `far` and the mask besides, for the formats that can carry it.
Point clouds drop sky points unless `keep` is asked for (jobs/measure.py).

The graph decides what is sky, on every backend alike (it returns sky pixels negated); here the sign is read
back and the mode applied at the network's resolution, before the resize to the image's size, so that the far
value blends into the horizon as the rest of the map does. The mask is resized with the depth's own bilinear rule
and thresholded at one half. A model without a sky head is untouched by any mode. Torch is imported only in the
functions: the CLI reads the modes for `--help`.
"""

SKY_MODES = ("keep", "far", "mask")
DEFAULT_SKY = "far"


def check_sky_mode(mode: str) -> str:
    """`mode` if it is one of SKY_MODES; ValueError otherwise (the API's check; the CLI offers only these)."""
    if mode not in SKY_MODES:
        raise ValueError(f"sky={mode!r}: expected one of {', '.join(SKY_MODES)}")
    return mode


def apply_sky(signed_bhw, mode: str):
    """A sky-head model's `signed_depth` (torch, B,H,W) → (the depth `mode` asks for, the sky mask (bool))."""
    from dav2_cli.model.head import sky_set_far, split_signed

    depth_bhw, sky_bhw = split_signed(signed_bhw)
    return (depth_bhw if check_sky_mode(mode) == "keep" else sky_set_far(depth_bhw, sky_bhw)), sky_bhw


def sky_to_image_size(sky_bhw, image_hw: tuple[int, int]):
    """A network-resolution sky mask (torch bool, B,H,W) at the image's own size: resized as the depth is, then
    sky where at least half sky."""
    from dav2_cli.depth.sizing import to_image_size

    return to_image_size(sky_bhw.float(), image_hw) >= 0.5
