"""Fetching a catalogue model's file from the Hub, through huggingface_hub.

huggingface_hub owns the transfer: the standard cache layout that transformers, diffusers and ComfyUI share (so
a file one of them fetched is ours and ours is theirs), its per-file locks (the tasks of a sharded job that start
together download once), resuming `.incomplete` files, `HF_TOKEN` for gated or private repos, `HF_ENDPOINT` for
mirrors. What stays here is what it does not do: the sha256 check of the bytes against the hash the Hub announces
for an LFS file (huggingface_hub names the blob after it but never compares), the offline switches read when the
call is made rather than when the library was imported, and every failure as one line naming the file, where to
get it and where to put it by hand.

huggingface_hub is imported only when a download starts: listing and resolving cached models never pays for it.
"""

import hashlib
import os
import sys
from pathlib import Path

from dav2_cli.errors import UserError
from dav2_cli.weights.catalog import ModelSpec
from dav2_cli.weights.locations import download_folder, hand_placed, hf_hub_cache

DEFAULT_ENDPOINT = "https://huggingface.co"
PROBE_TIMEOUT_S = 10  # the first request: an unreachable network must fail in seconds, not minutes
CHUNK_BYTES = 1 << 20
_TRUTHY = {"1", "true", "yes", "on"}


def endpoint() -> str:
    """The Hub to ask: `$DAV2_HF_ENDPOINT` (dav2 alone), else `$HF_ENDPOINT` (every HF tool), else huggingface.co."""
    return (os.environ.get("DAV2_HF_ENDPOINT") or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def download_url(spec: ModelSpec) -> str:
    return f"{endpoint()}/{spec.repo}/resolve/main/{spec.filename}"


def offline_variable() -> str | None:
    """The variable that forbids the network now (`DAV2_OFFLINE`, or huggingface_hub's `HF_HUB_OFFLINE`), if any."""
    for variable in ("DAV2_OFFLINE", "HF_HUB_OFFLINE"):
        if os.environ.get(variable, "").strip().lower() in _TRUTHY:
            return variable
    return None


def missing_message(spec: ModelSpec, problem: str) -> str:
    return f"{problem}; get {spec.filename} from {download_url(spec)} and put it at {hand_placed(spec)}"


def download(spec: ModelSpec, *, progress: bool = True) -> Path:
    """Fetch `spec`'s file into `download_folder()` and return its path, its sha256 checked against the Hub's."""
    variable = offline_variable()
    if variable:
        raise UserError(missing_message(spec, f"model {spec.name} is not downloaded and {variable} is set"))
    from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url

    folder, hub = download_folder(), endpoint()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{folder}: cannot create the model folder ({exc.strerror or exc})") from None
    try:
        announced = get_hf_file_metadata(hf_hub_url(spec.repo, spec.filename, endpoint=hub), endpoint=hub,
                                         timeout=PROBE_TIMEOUT_S)
        # a plain file in DAV2_HOME, or the HF cache; the HF cache is always named, as our one rule finds it, so
        # huggingface_hub never falls back on the one it read from the environment when it was first imported
        place = {"cache_dir": hf_hub_cache()} if folder == hf_hub_cache() else \
            {"local_dir": folder / spec.local_folder, "cache_dir": hf_hub_cache()}
        if spec.companion:  # small, and needed to read the weights: fetched first
            hf_hub_download(spec.repo, spec.companion, endpoint=hub, etag_timeout=PROBE_TIMEOUT_S,
                            tqdm_class=_bar_class(False), **place)
        path = Path(hf_hub_download(spec.repo, spec.filename, endpoint=hub, etag_timeout=PROBE_TIMEOUT_S,
                                    tqdm_class=_bar_class(progress), **place))
    except _failures() as exc:
        raise UserError(missing_message(spec, f"cannot download model {spec.name} ({_reason(exc)})")) from None
    _verify(path, announced.etag, spec.filename)
    if spec.non_commercial:  # said once, when the file arrives: a cached model is used without a word
        print(f"dav2: {spec.name} is licensed {spec.licence}: not for commercial use (see "
              f"https://huggingface.co/{spec.repo})", file=sys.stderr, flush=True)
    return path


def _bar_class(progress: bool):
    """huggingface_hub takes a bar class, not a flag; its own draws only on a terminal, whereas dav2 has always
    drawn its download bar on stderr (unless `progress` is off), terminal or log file."""
    from tqdm import tqdm

    class Bar(tqdm):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **{**kwargs, "disable": not progress})

    return Bar


def _failures() -> tuple[type[BaseException], ...]:
    """What a download can fail with that is the network's or the disk's fault, not a bug: the Hub's answers,
    the transport's errors (whichever HTTP client this huggingface_hub release uses), and OSError (disk, size)."""
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    failures = [HfHubHTTPError, LocalEntryNotFoundError, OSError]
    for module, name in (("httpx2", "HTTPError"), ("httpx", "HTTPError"), ("requests", "RequestException")):
        try:
            failures.append(getattr(__import__(module), name))
        except (ImportError, AttributeError):
            pass
    return tuple(failures)


def _reason(exc: BaseException) -> str:
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError

    if isinstance(exc, GatedRepoError):
        return "the repo is gated: accept its terms on the Hub and set HF_TOKEN"
    response = getattr(exc, "response", None)
    if isinstance(exc, HfHubHTTPError) and response is not None:
        return f"the server answered HTTP {response.status_code} {getattr(response, 'reason_phrase', '')}".rstrip()
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"network error: {text[:200]}"


def _verify(path: Path, etag: str | None, label: str) -> None:
    """The Hub announces an LFS file's sha256 as its ETag: a file that does not hash to it is deleted (blob and
    snapshot link alike), so that the next run fetches it again instead of loading damaged weights."""
    expected = (etag or "").lower()
    if len(expected) != 64 or any(c not in "0123456789abcdef" for c in expected):
        return  # not an LFS file's hash (a git blob id, another server): nothing to compare
    digest = hashlib.sha256()
    with open(path, "rb") as data:
        while chunk := data.read(CHUNK_BYTES):
            digest.update(chunk)
    if digest.hexdigest() == expected:
        return
    for stale in {path.resolve(), path}:
        try:
            stale.unlink()
        except OSError:
            pass
    raise UserError(f"download of {label} is corrupt (sha256 {digest.hexdigest()[:12]}..., expected "
                    f"{expected[:12]}...); deleted it, run again")
