"""The `--input-size` rule's numbers: what the model may be asked to see, in one place for the sizing code and
the CLI alike. Plain constants, no imports, so `dav2 --help` can show them without loading numpy (a third of
a second on a busy machine)."""

SIZE_MULTIPLE = 28  # two 14-pixel patches: an even patch grid
MIN_INPUT_SIZE = SIZE_MULTIPLE  # one even grid on the short side
DEFAULT_INPUT_SIZE = 504  # upstream's 518 is not a multiple of 28; 504 is the nearest even grid below it
MAX_INPUT_SIZE = 4200  # 150 patches on the short side; beyond this attention memory explodes for no gain
MAX_ASPECT_RATIO = 16  # the short side is scaled to input_size, so the long side grows with this
