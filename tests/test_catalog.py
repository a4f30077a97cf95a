"""Model names, cache folders and the downloader, against a local HTTP server that behaves like the Hub."""

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
from dav2_cli.weights.catalog import (
    dav2_home,
    find_spec,
    hf_hub_cache,
    list_models,
    resolve,
)

PAYLOAD = random.Random(0).randbytes(300_000)
PAYLOAD_SHA256 = hashlib.sha256(PAYLOAD).hexdigest()
VITS_FILE = "depth_anything_v2_vits.pth"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    """Every test starts with its own empty caches and none of the caller's settings or proxies."""
    for variable in ("DAV2_HOME", "XDG_CACHE_HOME", "HF_HUB_CACHE", "HF_HOME", "DAV2_HF_ENDPOINT", "HF_ENDPOINT",
                     "DAV2_OFFLINE", "HF_HUB_OFFLINE", "http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY",
                     "all_proxy", "ALL_PROXY"):
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
    """Hub-like file serving: HEAD and GET on /<repo>/resolve/main/<file> redirect to /cdn/<file>; only HEAD's
    redirect carries X-Linked-Size and X-Linked-Etag, as the Hub does for LFS files; /cdn honours Range."""

    def __init__(self):
        self.body = PAYLOAD
        self.honour_range = True
        self.cut_after = None  # send only this many bytes, then drop the connection
        self.stall = False  # after cut_after bytes, hang instead of dropping
        self.released = threading.Event()
        self.gate = None  # an Event: the CDN holds every body back until it is set
        self.requests = []  # (method, path, Range header)
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_HEAD(self):
                self.answer(head=True)

            def do_GET(self):
                self.answer(head=False)

            def answer(self, head):
                hub.requests.append((self.command, self.path, self.headers.get("Range")))
                if self.path == f"/depth-anything/Depth-Anything-V2-Small/resolve/main/{VITS_FILE}":
                    self.send_response(302)
                    self.send_header("Location", f"/cdn/{VITS_FILE}")
                    if head:
                        self.send_header("X-Linked-Size", str(len(PAYLOAD)))
                        self.send_header("X-Linked-Etag", f'"{PAYLOAD_SHA256}"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif self.path == f"/cdn/{VITS_FILE}":
                    self.send_cdn(head)
                else:
                    self.send_error(404)

            def send_cdn(self, head):
                start = 0
                range_header = self.headers.get("Range")
                if range_header and hub.honour_range:
                    start = int(range_header.removeprefix("bytes=").split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(hub.body) - 1}/{len(hub.body)}")
                else:
                    self.send_response(200)
                body = hub.body[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head and hub.gate is not None:
                    hub.gate.wait(10)
                if not head:
                    self.wfile.write(body[:hub.cut_after] if hub.cut_after is not None else body)
                    if hub.stall:
                        self.wfile.flush()
                        hub.released.wait(10)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def methods(self):
        return [(method, path.split("/")[1], rng) for method, path, rng in self.requests]


@pytest.fixture
def hub(monkeypatch):
    fake = FakeHub()
    fake.thread.start()
    monkeypatch.setenv("DAV2_HF_ENDPOINT", fake.url)
    yield fake
    fake.released.set()
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
    assert f"{hub.url}/depth-anything/Depth-Anything-V2-Small/resolve/main/{VITS_FILE}" in message
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
    assert not (tmp_path / "dav2" / "depth_anything_v2_metric_vkitti_vitl.pth.part").exists()


def test_http_error_is_reported(hub):
    with pytest.raises(UserError, match=r"cannot download model vitb \(the server answered HTTP 404"):
        resolve("vitb")


# --- downloads -----------------------------------------------------------------------------------------------

def test_full_download(hub, tmp_path):
    path = resolve("vits", progress=False)
    assert path == tmp_path / "dav2" / VITS_FILE
    assert path.read_bytes() == PAYLOAD
    assert not path.with_name(VITS_FILE + ".part").exists()
    assert hub.methods() == [("HEAD", "depth-anything", None), ("GET", "depth-anything", None),
                             ("GET", "cdn", None)]  # the probe stops at the redirect; the GET follows it


def test_resume_of_a_half_part(hub, tmp_path):
    part = tmp_path / "dav2" / (VITS_FILE + ".part")
    part.parent.mkdir()
    part.write_bytes(PAYLOAD[:150_000])
    assert resolve("vits", progress=False).read_bytes() == PAYLOAD
    assert ("GET", "cdn", "bytes=150000-") in hub.methods()
    assert not part.exists()


def test_server_ignoring_range_restarts_from_zero(hub, tmp_path):
    hub.honour_range = False
    part = tmp_path / "dav2" / (VITS_FILE + ".part")
    part.parent.mkdir()
    part.write_bytes(PAYLOAD[:150_000])
    assert resolve("vits", progress=False).read_bytes() == PAYLOAD


def test_dropped_connection_keeps_the_part_and_the_next_run_resumes(hub, tmp_path):
    hub.cut_after = 100_000
    with pytest.raises(UserError, match=f"{VITS_FILE} stopped at 100000 of 300000 bytes; run again to resume"):
        resolve("vits", progress=False)
    part = tmp_path / "dav2" / (VITS_FILE + ".part")
    assert part.read_bytes() == PAYLOAD[:100_000]
    hub.cut_after = None
    assert resolve("vits", progress=False).read_bytes() == PAYLOAD
    assert ("GET", "cdn", "bytes=100000-") in hub.methods()


def test_stalled_transfer_times_out_and_keeps_the_part(hub, tmp_path, monkeypatch):
    monkeypatch.setattr(catalog, "TRANSFER_TIMEOUT_S", 0.3)
    hub.cut_after, hub.stall = 100_000, True
    with pytest.raises(UserError, match=r"network error: .*the partial download is kept and the next try resumes"):
        resolve("vits", progress=False)
    assert (tmp_path / "dav2" / (VITS_FILE + ".part")).read_bytes() == PAYLOAD[:100_000]


def test_corrupt_body_fails_the_hash_and_leaves_nothing(hub, tmp_path):
    hub.body = PAYLOAD[:-1] + bytes([PAYLOAD[-1] ^ 0xFF])
    with pytest.raises(UserError, match=f"{VITS_FILE} is corrupt .*deleted it"):
        resolve("vits", progress=False)
    assert os.listdir(tmp_path / "dav2") == []


def test_simultaneous_runs_download_a_model_once(hub, tmp_path, monkeypatch):
    """The tasks of a sharded job start together: one downloads, the others wait and use its file."""
    hub.gate = threading.Event()  # the first run's body is held back until the other two are waiting for it
    waits, both_waiting = [], threading.Event()

    def note(message, **_):
        waits.append(message)
        if len(waits) == 2:
            both_waiting.set()

    monkeypatch.setattr(catalog, "print", note, raising=False)
    results = []
    runs = [threading.Thread(target=lambda: results.append(resolve("vits", progress=False))) for _ in range(3)]
    for run in runs:
        run.start()
    both_waiting.wait(10)
    hub.gate.set()
    for run in runs:
        run.join(20)
    assert results == [tmp_path / "dav2" / VITS_FILE] * 3
    assert results[0].read_bytes() == PAYLOAD
    assert [entry for entry in hub.methods() if entry[1] == "cdn"] == [("GET", "cdn", None)]
    assert len(waits) >= 2 and waits[0] == f"dav2: waiting for another dav2 downloading {VITS_FILE}"
    assert os.listdir(tmp_path / "dav2") == [VITS_FILE]  # no lock file left behind


def test_a_lock_file_left_by_a_killed_run_does_not_block(hub, tmp_path):
    folder = tmp_path / "dav2"
    folder.mkdir()
    (folder / (VITS_FILE + ".lock")).touch()  # no process holds it
    assert resolve("vits", progress=False).read_bytes() == PAYLOAD
    assert os.listdir(folder) == [VITS_FILE]


def test_progress_bar_goes_to_stderr(hub, capsys):
    resolve("vits", progress=True)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert VITS_FILE in captured.err


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
    lines = {line.split()[0]: line.split() for line in result.stdout.splitlines()[1:]}
    assert len(lines) == 15
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
    assert [method for method, _, _ in hub.requests].count("HEAD") == 1


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
