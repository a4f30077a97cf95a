"""Model names, cache folders and downloads through huggingface_hub, against a local server speaking the Hub's
file routes (HEAD/GET /<repo>/resolve/main/<file>, LFS redirect to a CDN): no test needs the internet."""

import hashlib
import http.server
import json
import os
import random
import socket
import threading
from pathlib import Path

import pytest

from dav2_cli.errors import UserError
from dav2_cli.weights import catalog
from dav2_cli.weights.catalog import find_spec
from dav2_cli.weights.locations import dav2_home, download_folder, hf_hub_cache
from dav2_cli.weights.lookup import list_models, resolve

PAYLOAD = random.Random(0).randbytes(300_000)
PAYLOAD_SHA256 = hashlib.sha256(PAYLOAD).hexdigest()
VITS_FILE = "depth_anything_v2_vits.pth"
VITS_REPO = "depth-anything/Depth-Anything-V2-Small"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    """Every test starts with its own empty caches and none of the caller's settings or proxies."""
    for variable in ("DAV2_HOME", "XDG_CACHE_HOME", "HF_HUB_CACHE", "HF_HOME", "DAV2_HF_ENDPOINT", "HF_ENDPOINT",
                     "DAV2_OFFLINE", "HF_HUB_OFFLINE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "http_proxy",
                     "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    monkeypatch.setenv("DAV2_HOME", str(tmp_path / "dav2"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-hub"))
    monkeypatch.setenv("DAV2_HF_ENDPOINT", closed_port_url())


def closed_port_url() -> str:
    """An endpoint nothing listens on: any request to it fails, so a success proves no request was made."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


class FakeHub:
    """The Hub's file routes as huggingface_hub uses them. HEAD and GET on /<repo>/resolve/main/<file> answer
    302 to a CDN on another host name (so the client stops there, as it does for the real CDN), carrying
    X-Repo-Commit, X-Linked-Size and X-Linked-Etag (the LFS sha256); /cdn honours Range, and can drop the
    connection once after `cut_after` bytes or hold bodies back until `gate` is set."""

    def __init__(self):
        self.body = PAYLOAD
        self.cut_after = None  # the next CDN body stops after this many bytes, then the connection drops
        self.gate = None  # an Event: the CDN holds every body back until it is set
        self.requests = []  # (method, first path part, Range header, Authorization header)
        self.heads_wanted, self.heads_seen = None, threading.Event()  # set once that many HEADs reached the Hub
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_HEAD(self):
                self.answer(head=True)

            def do_GET(self):
                self.answer(head=False)

            def answer(self, head):
                hub.requests.append((self.command, self.path.split("/")[1], self.headers.get("Range"),
                                     self.headers.get("Authorization")))
                if hub.heads_wanted and hub.count("HEAD", "depth-anything") >= hub.heads_wanted:
                    hub.heads_seen.set()
                if self.path == f"/{VITS_REPO}/resolve/main/{VITS_FILE}":
                    self.send_response(302)
                    self.send_header("Location", f"http://localhost:{hub.port}/cdn/{VITS_FILE}")
                    self.send_header("X-Repo-Commit", COMMIT)
                    self.send_header("X-Linked-Size", str(len(PAYLOAD)))
                    self.send_header("X-Linked-Etag", f'"{PAYLOAD_SHA256}"')
                    self.send_header("ETag", '"a-git-blob-id"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif self.path == f"/cdn/{VITS_FILE}":
                    self.send_cdn(head)
                else:
                    self.send_response(404)
                    self.send_header("X-Error-Code", "EntryNotFound")
                    self.send_header("Content-Length", "0")
                    self.end_headers()

            def send_cdn(self, head):
                start = 0
                range_header = self.headers.get("Range")
                if range_header:
                    start = int(range_header.removeprefix("bytes=").split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(hub.body) - 1}/{len(hub.body)}")
                else:
                    self.send_response(200)
                body = hub.body[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if head:
                    return
                if hub.gate is not None:
                    hub.gate.wait(10)
                if hub.cut_after is not None:
                    body, hub.cut_after = body[:hub.cut_after], None
                    self.close_connection = True
                self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def count(self, method, part, rng=None):
        return sum(1 for m, p, r, _ in self.requests if (m, p, r) == (method, part, rng))


@pytest.fixture
def hub(monkeypatch):
    fake = FakeHub()
    fake.thread.start()
    monkeypatch.setenv("DAV2_HF_ENDPOINT", fake.url)
    yield fake
    if fake.gate is not None:
        fake.gate.set()
    fake.server.shutdown()
    fake.server.server_close()


# --- names and folders ---------------------------------------------------------------------------------------

def test_names_and_aliases():
    assert find_spec("vits") is find_spec("small") is find_spec(" Small ")
    assert find_spec("large").filename == "depth_anything_v2_vitl.pth"
    indoor = find_spec("metric-indoor-vitb")
    assert (indoor.kind, indoor.max_depth, indoor.repo, indoor.filename) == (
        "metric", 20.0, "depth-anything/Depth-Anything-V2-Metric-Hypersim-Base",
        "depth_anything_v2_metric_hypersim_vitb.pth")
    outdoor = find_spec("metric-outdoor-small")
    assert (outdoor.name, outdoor.max_depth, outdoor.filename) == (
        "metric-outdoor-vits", 80.0, "depth_anything_v2_metric_vkitti_vits.pth")
    assert find_spec("vitg") is None
    assert find_spec(catalog.DEFAULT_MODEL).licence == "Apache-2.0"
    assert find_spec("vitl").licence == "CC-BY-NC-4.0"


def test_dav2_home_rules(monkeypatch, tmp_path):
    assert dav2_home() == tmp_path / "dav2"
    monkeypatch.delenv("DAV2_HOME")
    assert dav2_home() == tmp_path / "user" / ".cache" / "dav2"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert dav2_home() == tmp_path / "xdg" / "dav2"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/xdg")  # invalid per the XDG spec: ignored
    assert dav2_home() == tmp_path / "user" / ".cache" / "dav2"
    monkeypatch.setenv("DAV2_HOME", "~/models")
    assert dav2_home() == tmp_path / "user" / "models"


def test_hf_cache_rules(monkeypatch, tmp_path):
    assert hf_hub_cache() == tmp_path / "hf-hub"
    monkeypatch.delenv("HF_HUB_CACHE")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hfhome"))
    assert hf_hub_cache() == tmp_path / "hfhome" / "hub"
    monkeypatch.delenv("HF_HOME")
    assert hf_hub_cache() == tmp_path / "user" / ".cache" / "huggingface" / "hub"


def test_existing_path_is_returned_as_is(tmp_path):
    weights = tmp_path / "vits"  # a file that happens to be named like a model wins over the name
    weights.write_bytes(b"x")
    assert resolve(weights) == weights
    assert resolve(str(tmp_path)) == tmp_path


def test_unknown_name_lists_the_names(tmp_path):
    with pytest.raises(UserError, match=r"nope\.pth: no such file or folder, and not a model name \(names: vits, vitb"):
        resolve(tmp_path / "nope.pth")


def test_hand_placed_file_is_used_without_network(tmp_path):
    placed = tmp_path / "dav2" / VITS_FILE
    placed.parent.mkdir()
    placed.write_bytes(b"not even checked")
    assert resolve("small") == placed  # DAV2_HF_ENDPOINT is a closed port: any request would have failed
    assert [m["cached"] for m in list_models() if m["name"] == "vits"] == [placed]


def make_hf_snapshot(root: Path, repo: str, revision: str, complete=True) -> Path:
    folder = root / ("models--" + repo.replace("/", "--"))
    snapshot = folder / "snapshots" / revision
    snapshot.mkdir(parents=True)
    blob = folder / "blobs" / ("b" + revision)
    blob.parent.mkdir(exist_ok=True)
    if complete:
        blob.write_bytes(b"safetensors")
    (snapshot / "model.safetensors").symlink_to(blob)  # dangling while the blob is still downloading
    (snapshot / "config.json").write_text(json.dumps({"depth_estimation_type": "metric", "max_depth": 20}))
    return snapshot


def test_hf_cache_snapshot_is_found(tmp_path):
    repo = "depth-anything/Depth-Anything-V2-Metric-Indoor-Small-hf"
    make_hf_snapshot(tmp_path / "hf-hub", repo, "aaa")
    main = make_hf_snapshot(tmp_path / "hf-hub", repo, "bbb")
    make_hf_snapshot(tmp_path / "hf-hub", repo, "ccc", complete=False)
    (tmp_path / "hf-hub" / ("models--" + repo.replace("/", "--")) / "refs").mkdir()
    (main.parent.parent / "refs" / "main").write_text("bbb\n")
    assert resolve("metric-indoor-vits") == main
    with pytest.raises(UserError, match="model vits is not downloaded"):
        resolve("vits", download=False)


def test_incomplete_hf_snapshot_is_not_used(tmp_path):
    make_hf_snapshot(tmp_path / "hf-hub", "depth-anything/Depth-Anything-V2-Small-hf", "ccc", complete=False)
    with pytest.raises(UserError, match="not downloaded"):
        resolve("vits", download=False)


def test_our_cache_wins_over_the_hf_cache(tmp_path):
    make_hf_snapshot(tmp_path / "hf-hub", "depth-anything/Depth-Anything-V2-Small-hf", "aaa")
    placed = tmp_path / "dav2" / VITS_FILE
    placed.parent.mkdir()
    placed.write_bytes(b"x")
    assert resolve("vits") == placed


# --- offline and network errors ------------------------------------------------------------------------------

@pytest.mark.parametrize("variable", ["DAV2_OFFLINE", "HF_HUB_OFFLINE"])
def test_offline_error_says_what_where_and_from_where(monkeypatch, tmp_path, hub, variable):
    monkeypatch.setenv(variable, "1")
    with pytest.raises(UserError) as error:
        resolve("vits")
    message = str(error.value)
    assert f"{variable} is set" in message
    assert f"{hub.url}/{VITS_REPO}/resolve/main/{VITS_FILE}" in message
    assert str(tmp_path / "dav2" / VITS_FILE) in message
    assert "\n" not in message
    assert hub.requests == []


def test_unreachable_server_is_one_line_with_url_and_target(tmp_path):
    with pytest.raises(UserError) as error:
        resolve("metric-outdoor-vitl")
    message = str(error.value)
    assert message.startswith("cannot download model metric-outdoor-vitl (network error:")
    assert "/depth-anything/Depth-Anything-V2-Metric-VKITTI-Large/resolve/main/" in message
    assert message.endswith(f"put it at {tmp_path / 'dav2' / 'depth_anything_v2_metric_vkitti_vitl.pth'}")
    assert "\n" not in message


def test_http_error_is_reported(hub):
    with pytest.raises(UserError, match=r"cannot download model vitb \(the server answered HTTP 404"):
        resolve("vitb")


# --- downloads through huggingface_hub -------------------------------------------------------------------------

def test_download_goes_into_the_hf_cache_where_other_tools_find_it(hub, monkeypatch, tmp_path):
    from huggingface_hub import try_to_load_from_cache

    monkeypatch.delenv("DAV2_HOME")
    assert download_folder() == tmp_path / "hf-hub"
    path = resolve("vits", progress=False)
    repo = tmp_path / "hf-hub" / "models--depth-anything--Depth-Anything-V2-Small"
    assert path == repo / "snapshots" / COMMIT / VITS_FILE and (repo / "refs" / "main").read_text() == COMMIT
    assert path.read_bytes() == PAYLOAD
    assert path.resolve().name == PAYLOAD_SHA256  # the cache's blob, named by its hash
    # transformers, diffusers and ComfyUI ask huggingface_hub: it finds ours, offline
    assert Path(try_to_load_from_cache(VITS_REPO, VITS_FILE, cache_dir=tmp_path / "hf-hub")) == path
    requests = len(hub.requests)
    assert resolve("vits") == path and len(hub.requests) == requests  # cached: no request at all
    assert hub.count("GET", "cdn") == 1


def test_a_file_another_tool_downloaded_is_used_offline(hub, monkeypatch, tmp_path):
    from huggingface_hub import hf_hub_download

    theirs = hf_hub_download(VITS_REPO, VITS_FILE, cache_dir=tmp_path / "hf-hub", endpoint=hub.url)
    monkeypatch.setenv("DAV2_HF_ENDPOINT", closed_port_url())
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve("vits") == Path(theirs)
    assert [m["cached"] for m in list_models() if m["name"] == "vits"] == [Path(theirs)]


def test_with_dav2_home_set_the_download_is_a_plain_file_there(hub, tmp_path):
    path = resolve("small", progress=False)
    assert path == tmp_path / "dav2" / VITS_FILE and not path.is_symlink()
    assert path.read_bytes() == PAYLOAD
    assert not (tmp_path / "hf-hub").exists()


def test_hf_home_hf_endpoint_and_hf_token_are_honoured(hub, monkeypatch, tmp_path):
    for variable in ("DAV2_HOME", "HF_HUB_CACHE", "DAV2_HF_ENDPOINT"):
        monkeypatch.delenv(variable)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    path = resolve("vits", progress=False)
    assert path.is_relative_to(tmp_path / "hf-home" / "hub") and path.read_bytes() == PAYLOAD
    to_hub = [auth for _, part, _, auth in hub.requests if part == "depth-anything"]
    assert to_hub and set(to_hub) == {"Bearer hf_secret"}
    assert all(auth is None for _, part, _, auth in hub.requests if part == "cdn")  # never sent off the Hub


def test_corrupt_body_fails_the_hash_and_leaves_nothing(hub, monkeypatch, tmp_path):
    monkeypatch.delenv("DAV2_HOME")
    hub.body = PAYLOAD[:-1] + bytes([PAYLOAD[-1] ^ 0xFF])
    with pytest.raises(UserError, match=f"{VITS_FILE} is corrupt .*deleted it, run again"):
        resolve("vits", progress=False)
    repo = tmp_path / "hf-hub" / "models--depth-anything--Depth-Anything-V2-Small"
    assert list((repo / "blobs").iterdir()) == [] and not (repo / "snapshots" / COMMIT / VITS_FILE).exists()
    hub.body = PAYLOAD
    assert resolve("vits", progress=False).read_bytes() == PAYLOAD  # the next run fetches it again


def test_a_dropped_connection_is_taken_up_again(hub, tmp_path):
    """huggingface_hub asks again from the last chunk it wrote (10 MB chunks: from 0 for this small file)."""
    hub.cut_after = 100_000
    assert resolve("vits", progress=False).read_bytes() == PAYLOAD
    assert hub.count("GET", "cdn") == 2


def test_simultaneous_runs_download_a_model_once(hub, monkeypatch, tmp_path):
    """The tasks of a sharded job start together: one downloads, the others wait and use its file."""
    monkeypatch.delenv("DAV2_HOME")
    hub.heads_wanted = 6  # each run asks twice (dav2's probe for the hash, huggingface_hub's own)
    hub.gate = threading.Event()  # the first body is held back until every run has asked the Hub
    results = []
    runs = [threading.Thread(target=lambda: results.append(resolve("vits", progress=False))) for _ in range(3)]
    for run in runs:
        run.start()
    hub.heads_seen.wait(20)
    hub.gate.set()
    for run in runs:
        run.join(30)
    assert len(results) == 3 and len(set(results)) == 1
    assert results[0].read_bytes() == PAYLOAD
    assert hub.count("GET", "cdn") == 1


def test_progress_bar_goes_to_stderr(hub, capsys):
    resolve("vits", progress=True)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "100%" in captured.err


def test_no_progress_bar_when_asked(hub, capsys):
    resolve("vits", progress=False)
    assert capsys.readouterr().err == ""


# --- `dav2 models` -------------------------------------------------------------------------------------------

def run_cli(*args):
    from click.testing import CliRunner

    from dav2_cli.cli import main

    return CliRunner().invoke(main, list(args))


def test_cli_models_lists_names_kinds_and_cache(tmp_path):
    placed = tmp_path / "dav2" / "depth_anything_v2_metric_hypersim_vitb.pth"
    placed.parent.mkdir()
    placed.write_bytes(b"x")
    result = run_cli("models")
    assert result.exit_code == 0, result.output
    header, *rows = result.stdout.splitlines()
    kind_at = header.index("KIND")  # the family before it has blanks in its names: read from the KIND column on
    lines = {line.split()[0]: line.split()[:2] + line[kind_at:].split() for line in rows}
    assert len(lines) == len(catalog.CATALOGUE)
    assert lines["da3-mono-l"][2:4] == ["relative", "depth"] and lines["da3-metric-l"][2:4] == ["metric", "m"]
    assert lines["video-vits"][2:4] == ["video", "relative"]
    assert lines["metric-video-vits"][2:5] == ["video", "metric", "m"]
    assert lines["vits"] == ["vits", "small", "relative", "99", "MB", "Apache-2.0", "-"]
    assert lines["vitl"][-2:] == ["CC-BY-NC-4.0", "-"]
    assert lines["metric-indoor-vitb"][2:4] == ["metric", "20"]
    assert lines["metric-indoor-vitb"][-1] == str(placed)
    assert lines["metric-outdoor-vits"][2:4] == ["metric", "80"]


def test_cli_models_path(tmp_path):
    result = run_cli("models", "path")
    assert (result.exit_code, result.stdout) == (0, f"{tmp_path / 'dav2'}\n")


def test_cli_models_download_prints_only_the_path(hub, tmp_path):
    result = run_cli("models", "download", "small")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{tmp_path / 'dav2' / VITS_FILE}\n"
    assert (tmp_path / "dav2" / VITS_FILE).read_bytes() == PAYLOAD
    assert run_cli("models", "download", "vits").stdout == result.stdout  # cached: no second download
    assert hub.count("GET", "cdn") == 1


def test_cli_models_download_errors(monkeypatch):
    monkeypatch.setenv("DAV2_OFFLINE", "1")
    offline = run_cli("models", "download", "vits")
    assert offline.exit_code == 1
    assert offline.stderr.startswith("dav2: error: model vits is not downloaded and DAV2_OFFLINE is set; get ")
    unknown = run_cli("models", "download", "huge")
    assert unknown.exit_code == 2
    assert "'huge' is not a model name" in unknown.stderr


def test_cli_models_never_imports_torch(tmp_path):
    import subprocess
    import sys

    code = ("import sys\nfrom click.testing import CliRunner\nfrom dav2_cli.cli import main\n"
            "result = CliRunner().invoke(main, ['models'])\n"
            "assert result.exit_code == 0, result.output\nprint('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "DAV2_HOME": str(tmp_path)})
    assert (done.returncode, done.stdout) == (0, "False\n"), done.stderr
