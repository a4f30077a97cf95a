"""Shared fixtures: seeded random checkpoints in upstream's layout, and upstream's own model as the reference."""

import faulthandler
import os
import signal

import cv2
import numpy as np
import pytest
import torch

from benchmarks.upstream import upstream_model
from dav2_cli.runtime import openvino_backend, tuning_cache

torch.set_num_threads(2)

CRASH_REPORT_FD = None  # where a crash's Python traceback goes: the terminal's stderr, whatever a test captures


def pytest_configure(config):
    global CRASH_REPORT_FD
    CRASH_REPORT_FD = os.dup(2)
    if openvino_backend.installed():
        # a process's first import of openvino reports itself (openvino_backend.telemetry_off): made here, the
        # tests' own imports of it are then quiet too
        openvino_backend.import_openvino()


def pytest_sessionstart(session):
    """The random order's seed, on the terminal even with -q: a crash or a failure that only one order shows can
    then be run again in that order (`--randomly-seed N`)."""
    seed = getattr(session.config.option, "randomly_seed", None)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if seed is not None and reporter is not None and session.config.pluginmanager.has_plugin("randomly"):
        reporter.write_line(f"tests in random order: --randomly-seed {seed}")


def report_crashes_on_the_terminal():
    """Ray's core worker replaces the SIGSEGV handler pytest's faulthandler had installed with its own, which logs
    into Ray's session folder while Ray runs and nowhere once it has shut down: a crash in any later test left CI
    with "Segmentation fault" alone. faulthandler is put back in front, writing to the terminal."""
    if CRASH_REPORT_FD is not None:
        faulthandler.disable()  # enable() alone keeps whatever handler replaced its own
        faulthandler.enable(file=CRASH_REPORT_FD, all_threads=True)


@pytest.fixture(scope="session", autouse=True)
def _session_cache_folder(tmp_path_factory):
    """One cache folder for the whole session, never the user's: tests run the default backend, as users do, and
    what it measures or converts (which backend is faster here, a model's OpenVINO graph) is done once per
    session and read by every later test, in this process and in the commands a test runs as a child."""
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("DAV2_BACKEND", raising=False)
        patch.delenv("DAV2_DTYPE", raising=False)
        patch.setenv("DAV2_HOME", str(tmp_path_factory.mktemp("dav2-home")))
        yield


@pytest.fixture(autouse=True)
def _signal_handlers_put_back():
    """A test that leaves its own Ctrl-C or SIGTERM handler installed would change how every later test, in any
    order, is stopped: it fails here, and the handlers are put back for the rest."""
    watched = (signal.SIGINT, signal.SIGTERM)
    before = {number: signal.getsignal(number) for number in watched}
    yield
    left = [number for number in watched if signal.getsignal(number) != before[number]]
    for number in left:
        signal.signal(number, before[number])
    assert not left, f"the test left its own handler for {', '.join(signal.Signals(n).name for n in left)}"


@pytest.fixture
def pythons_ctrl_c():
    """SIGINT handled by Python's own handler (a KeyboardInterrupt), as in a shell's foreground job, for the tests
    of what Ctrl-C does: a suite started in the background by a script inherits SIGINT ignored, and Python then
    installs no handler of its own."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    """An empty cache folder of this test's own, for tests of what is timed, cached and read back."""
    folder = tmp_path / "dav2-cache"
    monkeypatch.setattr(tuning_cache, "cache_folder", lambda: folder)
    monkeypatch.setenv("DAV2_HOME", str(folder))
    return folder


def installed_backends() -> list[str]:
    from dav2_cli.runtime.backends import BACKENDS

    return [name for name, row in BACKENDS.items() if row.installed()]


@pytest.fixture(params=[None, *installed_backends()], ids=lambda name: name or "default")
def each_backend(request):
    """The default backend (None: auto, as users run it) and each installed one by name."""
    return request.param


@pytest.fixture(scope="session")
def upstream_vits():
    return upstream_model("vits", seed=0)


@pytest.fixture(scope="session")
def upstream_vits_metric():
    return upstream_model("vits", seed=3, max_depth=20.0)


@pytest.fixture(scope="session")
def checkpoint_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("checkpoints")


@pytest.fixture(scope="session")
def vits_checkpoint(upstream_vits, checkpoint_dir):
    """A relative vits checkpoint file, named like upstream's."""
    path = checkpoint_dir / "depth_anything_v2_vits.pth"
    torch.save(upstream_vits.state_dict(), path)
    return path


@pytest.fixture(scope="session")
def vits_metric_checkpoint(upstream_vits_metric, checkpoint_dir):
    path = checkpoint_dir / "depth_anything_v2_metric_hypersim_vits.pth"
    torch.save(upstream_vits_metric.state_dict(), path)
    return path


def synthetic_photo(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth, photo-like BGR image: blurred noise over gradients (so depth maps are not flat)."""
    rng = np.random.default_rng(seed)
    noise = rng.random((height, width, 3)).astype(np.float32)
    ramp = np.linspace(0, 1, width, dtype=np.float32)[None, :, None]
    image = 0.6 * cv2.GaussianBlur(noise, (0, 0), max(1.0, min(height, width) / 40)) + 0.4 * ramp
    return np.clip(image * 255, 0, 255).astype(np.uint8)


@pytest.fixture
def make_photo():
    return synthetic_photo


@pytest.fixture(scope="session")
def local_ray():
    """One local Ray for the whole session, shared by every Ray test file: starting and stopping it costs seconds
    on a small machine. Two CPUs and a small object store, as the smallest cluster a user might have."""

    ray = pytest.importorskip("ray")
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=150 * 1024 * 1024, logging_level="ERROR",
             log_to_driver=False)
    report_crashes_on_the_terminal()
    yield ray
    ray.shutdown()


@pytest.fixture
def telemetry_sent(monkeypatch):
    """What OpenVINO's converter hands openvino-telemetry to report during the test: dav2 lets it report nothing."""
    telemetry = pytest.importorskip("openvino_telemetry")
    sent = []
    for method in ("start_session", "send_event", "end_session"):
        monkeypatch.setattr(telemetry.Telemetry, method,
                            lambda self, *args, method=method, **kwargs: sent.append((method, args)))
    return sent


@pytest.fixture
def one_thread():
    """torch on one thread here, as in an actor Ray gives one CPU: sums split over more threads round apart in the
    last bit, so only runs on equal threads can be compared byte for byte."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
