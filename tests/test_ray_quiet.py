"""A `--ray` run shows dav2's own lines only: none of Ray's start-up notices, logs or C++ lines, and nothing on
stdout (not even a terminal's colour reset)."""

import os
import subprocess
import sys

import cv2
import pytest

pytest.importorskip("ray")


def test_a_ray_run_that_starts_its_own_cluster_prints_only_dav2_lines(tmp_path, vits_checkpoint, make_photo):
    source = tmp_path / "DIR"
    source.mkdir()
    for index in range(2):
        assert cv2.imwrite(str(source / f"{index}.png"), make_photo(40, 64, index))
    (source / "broken.png").write_bytes(b"\x89PNG not really")  # errors are still shown
    env = {name: value for name, value in os.environ.items() if not name.startswith("RAY_")}  # as a user's shell
    result = subprocess.run([sys.executable, "-m", "dav2_cli", "folder", str(source), "-o", str(tmp_path / "OUT"),
                             "-m", str(vits_checkpoint), "--input-size", "56", "--format", "npy", "--ray"],
                            env=env, capture_output=True, text=True, timeout=300)
    lines = result.stderr.splitlines()
    assert result.returncode == 1, result.stderr
    assert [line for line in lines if not line.startswith("dav2: ")] == []
    assert len([line for line in lines if line.startswith("dav2: error:") and "broken.png" in line]) == 1
    assert lines[-1] == "dav2: done 2, skipped 0, failed 1"
    assert result.stdout == ""
