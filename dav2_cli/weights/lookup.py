"""What a model argument means (a name, a catalogue file name, or a path), and the path it resolves to.

The same rule serves `-m` and the Python API, so `load_model("depth_anything_v2_vits.pth")` finds the cached
file from any folder, as `-m depth_anything_v2_vits.pth` does. Messages name the argument, never a flag: the
command line adds its own wording around them.

Lookup order for a name (docs/offline.md): an existing path written as a path wins; then dav2's folder, the
HuggingFace cache (upstream's file, then the transformers copy), see `locations.cached_path`; then a download.
"""

from pathlib import Path

from dav2_cli.errors import UsageError, UserError
from dav2_cli.weights.catalog import CATALOGUE, ModelSpec, find_by_filename, find_spec
from dav2_cli.weights.download import download as fetch
from dav2_cli.weights.download import missing_message
from dav2_cli.weights.locations import cached_path


def looks_like_path(text: str) -> bool:
    """Whether TEXT names a file or folder rather than a model: a separator, a leading `.` or `~`, or a file
    extension. A bare word is a model name first, so a folder called `vits` in the working directory can never
    shadow the model `vits`; write `./vits` to mean the folder."""
    return any(mark in text for mark in ("/", "\\")) or text.startswith((".", "~")) or bool(Path(text).suffix)


def spec_for(name_or_path) -> ModelSpec | None:
    """The catalogue row an argument stands for, or None for a path.

    A bare word is a model name. A bare file name (no folder) that is not a file here, but is one of upstream's
    file names in the catalogue, stands for that model: the cached copy wherever it is. A file that exists is
    always itself."""
    text = str(name_or_path)
    if not looks_like_path(text):
        return find_spec(text)
    if Path(text).name == text and not Path(text).exists():
        return find_by_filename(text)
    return None


def argument_problem(name_or_path) -> str | None:
    """Why an argument can name no model (one clause, without the argument itself), or None if it can."""
    text = str(name_or_path)
    if spec_for(text) is not None or Path(text).expanduser().exists():
        return None
    names = ", ".join(spec.name for spec in CATALOGUE)
    return f"no such file or folder, and not a model name (names: {names})"


def check_model_argument(name_or_path) -> None:
    """Refuse, before anything loads, an argument that is neither a model name nor an existing file or folder."""
    problem = argument_problem(name_or_path)
    if problem:
        raise UsageError(f"{name_or_path}: {problem}")


def resolve(name_or_path, *, download: bool = True, progress: bool = True) -> Path:
    """A checkpoint path for a model name or catalogue file name (downloading it if it is nowhere on disk and
    `download`), or an existing file or folder as it is."""
    spec = spec_for(name_or_path)
    if spec is None:
        check_model_argument(name_or_path)
        return Path(str(name_or_path)).expanduser()
    cached = cached_path(spec)
    if cached:
        return cached
    if not download:
        raise UserError(missing_message(spec, f"model {spec.name} is not downloaded"))
    return fetch(spec, progress=progress)


def list_models() -> list[dict]:
    """The catalogue as rows; `label` says what a row's numbers mean (a metric VDA has no max_depth)."""
    return [
        {"name": spec.name, "aliases": list(spec.aliases), "encoder": spec.encoder, "kind": spec.kind,
         "max_depth": spec.max_depth, "licence": spec.licence, "size": spec.size, "cached": cached_path(spec),
         "family": spec.family, "label": spec.label}
        for spec in CATALOGUE
    ]
