"""Model names → weight files on disk: the catalogue, the cache folder, and the one download a name may need.

Names stand for upstream's own `.pth` files (the reference our depth must equal), cached flat in `dav2_home()`
under upstream's file names, so a user can see, copy, or hand-place them. A model already in the HuggingFace
cache (an `-hf` repo snapshot) is used where it is, found by path rules rather than by importing
huggingface_hub.

The downloader is a small urllib one, not huggingface_hub, on purpose: huggingface_hub would be another
dependency and lays files out as blobs, symlinks and snapshot folders, whereas we want one plain file per model
at a path we can print in an error message; and we want every failure (offline, proxy, 404, bad hash) as one
line that says which file, where to get it and where to put it. What it needs from the Hub is small: LFS files
announce their size and sha256 in `X-Linked-Size` / `X-Linked-Etag` before redirecting to the CDN, and the CDN
honours HTTP Range, which is enough to verify and to resume.

Nothing here imports torch: `dav2 models` lists and downloads without paying for it.
"""

import hashlib
import http.client
import os
import re
import sys
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from dav2_cli.errors import UsageError, UserError

try:
    import fcntl
except ImportError:  # Windows: downloads go unlocked (see _download_lock)
    fcntl = None

DEFAULT_MODEL = "vits"
DEFAULT_ENDPOINT = "https://huggingface.co"
PROBE_TIMEOUT_S = 10  # the first request: an unreachable network must fail in seconds, not minutes
TRANSFER_TIMEOUT_S = 30  # the server answered the probe, so allow a CDN's slower stalls mid-transfer
CHUNK_BYTES = 1 << 20
_TRUTHY = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class ModelSpec:
    name: str
    aliases: tuple[str, ...]
    encoder: str
    kind: str  # "relative" (inverse depth, no unit) or "metric" (meters)
    max_depth: float | None
    repo: str  # upstream's HuggingFace repo holding `filename`
    filename: str  # upstream's file name: weights.py reads relative/metric and the dataset off it
    hf_repo: str  # the transformers-layout copy, used only when already in the HuggingFace cache ("": none)
    size: str
    licence: str
    family: str = "Depth-Anything V2"  # or VIDEO_FAMILY: one depth map per window of frames, not per image

    @property
    def label(self) -> str:
        """The kind as a user should read it: what the numbers mean, and which family."""
        if self.family == VIDEO_FAMILY:
            return "video metric m" if self.kind == "metric" else "video relative"
        return f"metric {self.max_depth:g} m" if self.kind == "metric" else "relative"


VIDEO_FAMILY = "Video Depth Anything"
_SCALES = (("vits", "Small", "99 MB"), ("vitb", "Base", "390 MB"), ("vitl", "Large", "1.3 GB"))
# Relative: upstream's README and model cards (only Small is Apache-2.0). Metric: each metric repo's model card
# declares apache-2.0, Base and Large included.
_RELATIVE_LICENCE = {"vits": "Apache-2.0", "vitb": "CC-BY-NC-4.0", "vitl": "CC-BY-NC-4.0"}


def _catalogue() -> tuple[ModelSpec, ...]:
    specs = []
    for encoder, scale, size in _SCALES:
        specs.append(ModelSpec(
            name=encoder, aliases=(scale.lower(),), encoder=encoder, kind="relative", max_depth=None,
            repo=f"depth-anything/Depth-Anything-V2-{scale}", filename=f"depth_anything_v2_{encoder}.pth",
            hf_repo=f"depth-anything/Depth-Anything-V2-{scale}-hf", size=size, licence=_RELATIVE_LICENCE[encoder]))
    for place, dataset, repo_dataset, max_depth in (("indoor", "hypersim", "Hypersim", 20.0),
                                                    ("outdoor", "vkitti", "VKITTI", 80.0)):
        for encoder, scale, size in _SCALES:
            specs.append(ModelSpec(
                name=f"metric-{place}-{encoder}", aliases=(f"metric-{place}-{scale.lower()}",), encoder=encoder,
                kind="metric", max_depth=max_depth,
                repo=f"depth-anything/Depth-Anything-V2-Metric-{repo_dataset}-{scale}",
                filename=f"depth_anything_v2_metric_{dataset}_{encoder}.pth",
                hf_repo=f"depth-anything/Depth-Anything-V2-Metric-{place.capitalize()}-{scale}-hf",
                size=size, licence="Apache-2.0"))
    # Video Depth Anything: upstream's own .pth files (no transformers copy). Licences from each repo's model card:
    # relative Small Apache-2.0, Base and Large CC-BY-NC-4.0; metric Small Apache-2.0. The metric Base and Large
    # cards could not be read when this was written: "see model card" until someone checks them.
    video_sizes = {"vits": "116 MB", "vitb": "458 MB", "vitl": "1.5 GB"}
    video_metric_licence = {"vits": "Apache-2.0", "vitb": "see model card", "vitl": "see model card"}
    for prefix, kind, file_prefix, repo_prefix in (("video", "relative", "", ""),
                                                   ("metric-video", "metric", "metric_", "Metric-")):
        for encoder, scale, _ in _SCALES:
            specs.append(ModelSpec(
                name=f"{prefix}-{encoder}", aliases=(f"{prefix}-{scale.lower()}",), encoder=encoder, kind=kind,
                max_depth=None, repo=f"depth-anything/{repo_prefix}Video-Depth-Anything-{scale}",
                filename=f"{file_prefix}video_depth_anything_{encoder}.pth", hf_repo="",
                size=video_sizes[encoder],
                licence=video_metric_licence[encoder] if kind == "metric" else _RELATIVE_LICENCE[encoder],
                family=VIDEO_FAMILY))
    return tuple(specs)


CATALOGUE = _catalogue()
_BY_NAME = {key: spec for spec in CATALOGUE for key in (spec.name, *spec.aliases)}


def find_spec(name: str) -> ModelSpec | None:
    return _BY_NAME.get(name.strip().lower())


def _env_path(variable: str) -> Path | None:
    value = os.environ.get(variable)
    return Path(value).expanduser() if value else None


def dav2_home() -> Path:
    """Where named models live: `$DAV2_HOME`, else `$XDG_CACHE_HOME/dav2`, else `~/.cache/dav2`."""
    home = _env_path("DAV2_HOME")
    if home:
        return home
    xdg = _env_path("XDG_CACHE_HOME")
    return (xdg if xdg and xdg.is_absolute() else Path.home() / ".cache") / "dav2"  # XDG: relative is invalid


def hf_hub_cache() -> Path:
    """huggingface_hub's own rule: `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `$XDG_CACHE_HOME/huggingface/hub`."""
    hub = _env_path("HF_HUB_CACHE")
    if hub:
        return hub
    hf_home = _env_path("HF_HOME")
    if hf_home:
        return hf_home / "hub"
    return (_env_path("XDG_CACHE_HOME") or Path.home() / ".cache") / "huggingface" / "hub"


def _hf_snapshot(repo: str) -> Path | None:
    """A complete snapshot (config.json + model.safetensors) of `repo`, preferring the one `refs/main` names."""
    folder = hf_hub_cache() / ("models--" + repo.replace("/", "--"))
    snapshots = folder / "snapshots"
    candidates = []
    try:
        candidates.append(snapshots / (folder / "refs" / "main").read_text().strip())
    except OSError:
        pass
    try:
        candidates += sorted(snapshots.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True)
    except OSError:
        return None
    for snapshot in candidates:
        # is_file follows the cache's symlinks into blobs/, so a half-fetched blob does not count
        if (snapshot / "config.json").is_file() and (snapshot / "model.safetensors").is_file():
            return snapshot
    return None


def cached_path(spec: ModelSpec) -> Path | None:
    """The model's weights if already on disk: our cache first, then a HuggingFace cache snapshot folder."""
    ours = dav2_home() / spec.filename
    if ours.is_file():
        return ours
    return _hf_snapshot(spec.hf_repo) if spec.hf_repo else None


def download_url(spec: ModelSpec) -> str:
    endpoint = os.environ.get("DAV2_HF_ENDPOINT") or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT
    return f"{endpoint.rstrip('/')}/{spec.repo}/resolve/main/{spec.filename}"


def _offline_variable() -> str | None:
    for variable in ("DAV2_OFFLINE", "HF_HUB_OFFLINE"):
        if os.environ.get(variable, "").strip().lower() in _TRUTHY:
            return variable
    return None


def looks_like_path(text: str) -> bool:
    """Whether `-m TEXT` names a file or folder rather than a model: a separator, a leading `.` or `~`, or a
    file extension. A bare word is a model name first, so a folder called `vits` in the working directory can
    never shadow the model `vits`; write `./vits` to mean the folder."""
    return any(mark in text for mark in ("/", "\\")) or text.startswith((".", "~")) or bool(Path(text).suffix)


def check_model_argument(name_or_path) -> None:
    """Refuse, before anything loads, a `-m` that is neither a model name nor an existing file or folder."""
    text = str(name_or_path)
    if find_spec(text) is not None and not looks_like_path(text):
        return
    if Path(text).expanduser().exists():
        return
    names = ", ".join(s.name for s in CATALOGUE)
    raise UsageError(f"-m {text}: no such file or folder, and not a model name (names: {names})")


def resolve(name_or_path, *, download: bool = True, progress: bool = True) -> Path:
    """A checkpoint path for a model name (downloading it if it is nowhere on disk), a file or a folder.

    The rule of `looks_like_path` decides which one a bare word is."""
    text = str(name_or_path)
    spec = None if looks_like_path(text) else find_spec(text)
    if spec is None:
        path = Path(text).expanduser()
        if path.exists():
            return path
        check_model_argument(text)  # raises: neither a name nor a path
    cached = cached_path(spec)
    if cached:
        return cached
    target = dav2_home() / spec.filename
    if not download:
        raise UserError(_missing(spec, target, f"model {spec.name} is not downloaded"))
    fetch(spec, target, progress=progress)
    return target


def list_models() -> list[dict]:
    """The catalogue as rows; `label` says what a row's numbers mean (a metric VDA has no max_depth)."""
    return [
        {"name": spec.name, "aliases": list(spec.aliases), "encoder": spec.encoder, "kind": spec.kind,
         "max_depth": spec.max_depth, "licence": spec.licence, "size": spec.size, "cached": cached_path(spec),
         "family": spec.family, "label": spec.label}
        for spec in CATALOGUE
    ]


def _missing(spec: ModelSpec, target: Path, problem: str) -> str:
    return f"{problem}; get {spec.filename} from {download_url(spec)} and put it at {target}"


def _network_reason(exc: Exception) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"the server answered HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return f"network error: {exc.reason}"
    return f"network error: {exc or type(exc).__name__}"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """The Hub's first answer (a redirect to the CDN) carries the LFS size and hash; keep it, don't follow."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_HEADERS = {"User-Agent": "dav2"}


def _probe(url: str) -> tuple[int | None, str | None]:
    """(size, sha256) as the Hub announces them for an LFS file; either may be absent on other servers."""
    request = urllib.request.Request(url, method="HEAD", headers=_HEADERS)
    try:
        with urllib.request.build_opener(_NoRedirect).open(request, timeout=PROBE_TIMEOUT_S) as response:
            headers, final = response.headers, True
    except urllib.error.HTTPError as exc:
        if not 300 <= exc.code < 400:
            raise
        headers, final = exc.headers, False
    size = headers.get("X-Linked-Size") or (headers.get("Content-Length") if final else None)
    etag = (headers.get("X-Linked-Etag") or "").removeprefix("W/").strip('"').lower()
    sha256 = etag if re.fullmatch(r"[0-9a-f]{64}", etag) else None  # other servers' ETags are not file hashes
    return (int(size) if size and size.isdigit() else None), sha256


def fetch(spec: ModelSpec, target: Path, *, progress: bool = True) -> None:
    """Download `spec` to `target` through `<target>.part`, resuming a leftover part and checking size and hash."""
    url = download_url(spec)
    variable = _offline_variable()
    if variable:
        raise UserError(_missing(spec, target, f"model {spec.name} is not downloaded and {variable} is set"))
    part = target.with_name(target.name + ".part")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{target.parent}: cannot create the model folder ({exc.strerror or exc})") from None
    with _download_lock(target):
        if target.is_file():  # another process finished it while this one waited
            return
        try:
            size, sha256 = _probe(url)
            _transfer(url, part, size, spec.filename, progress)
        except (OSError, http.client.HTTPException) as exc:  # URLError, timeouts, resets, truncated bodies
            kept = ", the partial download is kept and the next try resumes it" if _nonempty(part) else ""
            problem = f"cannot download model {spec.name} ({_network_reason(exc)}){kept}"
            raise UserError(_missing(spec, target, problem)) from None
        _verify(part, size, sha256, spec.filename)
        os.replace(part, target)


@contextmanager
def _download_lock(target: Path):
    """Holds `<target>.lock` so that one process downloads a model while the others wait for its file.

    The tasks of a sharded job (`--shard K/N` in a SLURM array) start together and would otherwise all write the
    same `.part`. The holder deletes the lock file before releasing it, so a waiter that then locks the deleted
    file sees that it is no longer at the path and tries again. Where the platform or file system has no flock
    (Windows, some network mounts) downloads go unlocked and the size and hash checks still catch a mixed part.
    """
    lock_path = target.with_name(target.name + ".lock")
    fd = _acquire(lock_path)
    try:
        yield
    finally:
        if fd is not None:
            try:
                os.unlink(lock_path)
            except OSError:
                pass
            os.close(fd)


def _acquire(lock_path: Path) -> int | None:
    """A descriptor holding an exclusive flock on the file now at `lock_path`; None where nothing can lock."""
    if fcntl is None:
        return None
    while True:
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise UserError(f"{lock_path}: cannot create ({exc.strerror or exc})") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                print(f"dav2: waiting for another dav2 downloading {lock_path.stem}", file=sys.stderr, flush=True)
                fcntl.flock(fd, fcntl.LOCK_EX)
            if os.path.samestat(os.fstat(fd), os.stat(lock_path)):
                return fd
        except FileNotFoundError:
            pass  # locked a lock file its holder had already deleted: take the current one
        except OSError:  # ENOLCK and the like: this file system cannot lock
            os.close(fd)
            return None
        os.close(fd)


def _nonempty(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 0


def _transfer(url: str, part: Path, size: int | None, label: str, progress: bool) -> None:
    offset = part.stat().st_size if part.is_file() and size is not None else 0  # resume only a known total
    if size is not None and offset == size:
        return
    if size is not None and offset > size:
        offset = 0
    from tqdm import tqdm  # deferred: only a download draws a bar

    request = urllib.request.Request(url, headers={**_HEADERS, **({"Range": f"bytes={offset}-"} if offset else {})})
    with urllib.request.urlopen(request, timeout=TRANSFER_TIMEOUT_S) as response:
        if response.status != 206:
            offset = 0  # the server ignored Range and sends the whole file: start over
        try:
            out = open(part, "ab" if offset else "wb")
        except OSError as exc:
            raise UserError(f"{part}: cannot write ({exc.strerror or exc})") from None
        with out, tqdm(total=size, initial=offset, unit="B", unit_scale=True, unit_divisor=1024, desc=label,
                       file=sys.stderr, disable=not progress) as bar:
            # read1: whatever has arrived, so a stall or a drop loses nothing already received
            while chunk := response.read1(CHUNK_BYTES):
                try:
                    out.write(chunk)
                except OSError as exc:
                    raise UserError(f"{part}: cannot write ({exc.strerror or exc})") from None
                bar.update(len(chunk))


def _verify(part: Path, size: int | None, sha256: str | None, label: str) -> None:
    got_size = part.stat().st_size
    if size is not None and got_size < size:
        raise UserError(f"download of {label} stopped at {got_size} of {size} bytes; run again to resume")
    if size is not None and got_size > size:
        part.unlink()
        raise UserError(f"download of {label} is {got_size} bytes, {size} expected; deleted it, run again")
    if sha256 is None:
        return
    digest = hashlib.sha256()
    with open(part, "rb") as data:
        while chunk := data.read(CHUNK_BYTES):
            digest.update(chunk)
    if digest.hexdigest() != sha256:
        part.unlink()
        raise UserError(f"download of {label} is corrupt (sha256 {digest.hexdigest()[:12]}..., expected "
                        f"{sha256[:12]}...); deleted it, run again")
