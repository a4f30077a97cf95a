"""`dav2 folder --ray` with IN and OUT as URIs, through pyarrow's file systems: a `file://` URI end to end on
Ray, and a bucket's one-upload-per-object path on pyarrow's in-memory file system (no cloud)."""

import json

import cv2
import numpy as np
import pytest

from dav2_cli.jobs.paths import embedded_description
from tests.folder_trees import SIZE, dav2, files, make_tree

pytest.importorskip("pyarrow")

PHOTOS = {"a.png": (40, 64, 1), "sub/b.png": (50, 50, 2), "sub/c.jpg": (64, 48, 3)}


@pytest.fixture
def tree(tmp_path, make_photo):
    return make_tree(tmp_path / "DIR", PHOTOS, make_photo)


def assert_same_outputs(got: dict, expected: dict, input_uri: str, input_path: str):
    """Outputs equal to a local run's: the same pixels and descriptions, whose `source` names the input as it was
    given (the URI on Ray, the path locally); nothing else differs."""
    assert sorted(got) == sorted(expected)
    for name, data in expected.items():
        if name.endswith(".json"):
            got_json, expected_json = json.loads(got[name]), json.loads(data)
            assert got_json.pop("source") == expected_json.pop("source").replace(input_path, input_uri)
            assert got_json == expected_json, name
        else:
            got_pixels, expected_pixels = (cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_UNCHANGED)
                                           for b in (got[name], data))
            assert got_pixels.dtype == np.uint16 and np.array_equal(got_pixels, expected_pixels), name
            got_text, expected_text = embedded_description(got[name]), embedded_description(data)
            assert got_text.pop("source") == expected_text.pop("source").replace(input_path, input_uri)
            assert got_text == expected_text, name


def test_file_uris_on_ray_give_a_local_runs_bytes_and_resume_from_one_listing(local_ray, tree, tmp_path,
                                                                              vits_checkpoint, one_thread):
    local = dav2("folder", tree, "-o", tmp_path / "local", "-m", vits_checkpoint, "--format", "gray16")
    assert local.exit_code == 0, local.output
    out_uri = (tmp_path / "ray").as_uri()
    on_ray = dav2("folder", tree.as_uri(), "-o", out_uri, "-m", vits_checkpoint, "--format", "gray16", "--ray")
    assert on_ray.exit_code == 0, on_ray.output
    expected = files(tmp_path / "local")
    assert len(expected) == 2 * len(PHOTOS)  # each gray16 PNG with its .json
    assert_same_outputs(files(tmp_path / "ray"), expected, tree.as_uri(), str(tree))
    assert not list((tmp_path / "ray").rglob(".*"))  # no temporary file left behind

    (tmp_path / "ray" / "sub" / "b.png").unlink()
    again = dav2("folder", tree.as_uri(), "-o", out_uri, "-m", vits_checkpoint, "--format", "gray16", "--ray",
                 "--skip-existing")
    assert again.exit_code == 0, again.output
    assert again.stderr.strip().splitlines()[-1] == f"dav2: done 1, skipped {len(PHOTOS) - 1}, failed 0"
    assert_same_outputs(files(tmp_path / "ray"), expected, tree.as_uri(), str(tree))


@pytest.mark.parametrize("where", ["in", "out"])
def test_a_uri_without_ray_is_a_usage_error_saying_so(tree, tmp_path, where):
    source, output = (tree.as_uri(), tmp_path / "OUT") if where == "in" else (tree, (tmp_path / "OUT").as_uri())
    result = dav2("folder", source, "-o", output)
    assert result.exit_code == 2
    assert "dav2 folder --ray" in result.stderr and "add --ray" in result.stderr
    assert not (tmp_path / "OUT").exists()


def test_a_bucket_gets_one_upload_per_file_with_a_local_runs_bytes(tree, tmp_path, vits_checkpoint, monkeypatch):
    """pyarrow's in-memory file system stands for a bucket (it is no LocalFileSystem, so nothing is renamed);
    the job runs in this process, on the code each Ray actor runs."""
    from pyarrow.fs import FileSystem

    from dav2_cli.jobs import uri_files
    from dav2_cli.jobs.image_depth import JobOptions
    from dav2_cli.jobs.images import run_items
    from dav2_cli.jobs.measure import plan_measure
    from dav2_cli.jobs.options import DepthOptions

    memory, _ = FileSystem.from_uri("mock:///")
    uploads = []

    class Bucket:  # the in-memory file system, counting uploads
        def __getattr__(self, name):
            return getattr(memory, name)

        def open_output_stream(self, path, *args, **kwargs):
            uploads.append(path)
            return memory.open_output_stream(path, *args, **kwargs)

    bucket = Bucket()
    monkeypatch.setattr(uri_files, "_file_system", lambda scheme_and_host: (bucket, ""))
    for folder in ("photos/sub", "depth/sub"):  # a bucket has no folders, the in-memory file system needs them
        memory.create_dir(folder, recursive=True)
    for name in PHOTOS:
        with memory.open_output_stream(f"photos/{name}") as stream:
            stream.write((tree / name).read_bytes())

    local = dav2("folder", tree, "-o", tmp_path / "local", "-m", vits_checkpoint, "--format", "gray16")
    assert local.exit_code == 0, local.output
    options = DepthOptions(model=str(vits_checkpoint), device="cpu", dtype="float32", input_size=int(SIZE),
                           fmt="gray16")
    items, output_uri = uri_files.plan_uri_folder("mock:///photos", "mock:///depth", "gray16", recursive=True)
    assert run_items(items, plan_measure(options), JobOptions(), summary=True) == 0
    expected = files(tmp_path / "local")
    assert sorted(uploads) == sorted(f"depth/{name}" for name in expected)  # one upload each, no temporary name
    got = {}
    for name in expected:
        with bucket.open_input_stream(f"depth/{name}") as stream:
            got[name] = stream.readall()
    assert_same_outputs(got, expected, "mock:///photos", str(tree))
    assert uri_files.existing_outputs([item.destination for item in items]) == {item.destination for item in items}
