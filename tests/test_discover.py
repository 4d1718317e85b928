"""Discovery: which files, in which order, under which names."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from w2v_embed.discover import DEFAULT_EXTENSIONS, AudioFile, discover, read_file_list


def touch(root: Path, *names: str) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")


@pytest.fixture
def corpus(tmp_path, monkeypatch):
    """A folder tree under tmp_path/corpus; the working directory is tmp_path, so inputs are relative."""
    monkeypatch.chdir(tmp_path)
    touch(
        tmp_path / "corpus",
        "b.wav", "a.WAV", "c.txt", "Z.flac", "noext", ".hidden.wav",
        "sub/b.flac", "sub/deeper/c.MP3", "sub/.secret/x.wav", ".cache/y.wav", "sub2/d.ogg",
    )  # fmt: skip
    return tmp_path


def names(files: list[AudioFile]) -> list[str]:
    return [f.name for f in files]


def test_folder_is_walked_sorted_recursively_skipping_hidden(corpus):
    assert names(discover(["corpus"])) == [
        "corpus/Z.flac",
        "corpus/a.WAV",
        "corpus/b.wav",
        "corpus/sub/b.flac",
        "corpus/sub/deeper/c.MP3",
        "corpus/sub2/d.ogg",
    ]


def test_paths_point_at_the_files(corpus):
    for file in discover(["corpus"]):
        assert file.path.is_file() and file.path == Path(file.name)
    absolute = discover([str(corpus / "corpus")])
    assert absolute[0].name == os.path.join(str(corpus), "corpus", "Z.flac")
    assert all(f.path.is_absolute() and f.path.is_file() for f in absolute)


@pytest.mark.parametrize(
    "typed, first",
    [
        ("corpus", "corpus/Z.flac"),
        ("corpus/", "corpus/Z.flac"),
        ("./corpus", "corpus/Z.flac"),
        ("./corpus/", "corpus/Z.flac"),
        (".//corpus/./", "corpus/Z.flac"),
        ("corpus/sub", "corpus/sub/b.flac"),
        ("corpus/sub/../sub", "corpus/sub/../sub/b.flac"),
    ],
)
def test_name_is_the_folder_as_typed_joined_with_the_relative_path_without_dot_parts(corpus, typed, first):
    assert names(discover([typed]))[0] == first


def test_name_from_inside_the_folder(corpus, monkeypatch):
    monkeypatch.chdir(corpus / "corpus")
    assert names(discover(["."]))[:2] == ["Z.flac", "a.WAV"]
    assert names(discover(["sub"])) == ["sub/b.flac", "sub/deeper/c.MP3"]


def test_not_recursive(corpus):
    assert names(discover(["corpus"], recursive=False)) == ["corpus/Z.flac", "corpus/a.WAV", "corpus/b.wav"]


@pytest.mark.parametrize("extensions", [("wav",), (".WAV",), ["Wav"], {" .wav "}])
def test_extensions_are_case_insensitive(corpus, extensions):
    assert names(discover(["corpus"], extensions)) == ["corpus/a.WAV", "corpus/b.wav"]


def test_default_extensions_cover_common_formats():
    for ext in ("wav", "flac", "mp3", "ogg", "opus", "m4a", "aac", "webm", "aiff"):
        assert ext in DEFAULT_EXTENSIONS
    assert all(e == e.lower() and not e.startswith(".") for e in DEFAULT_EXTENSIONS)


def test_sort_is_by_name_at_each_level(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    touch(tmp_path / "d", "a/z.wav", "a.wav", "b.wav", "a-b.wav", "a/a.wav")
    assert names(discover(["d"])) == ["d/a/a.wav", "d/a/z.wav", "d/a-b.wav", "d/a.wav", "d/b.wav"]


def test_files_are_taken_as_given(corpus):
    found = discover(["corpus/c.txt", "corpus/noext", "corpus/.hidden.wav", "corpus/sub/b.flac"])
    assert names(found) == ["corpus/c.txt", "corpus/noext", "corpus/.hidden.wav", "corpus/sub/b.flac"]
    assert found[0] == AudioFile(Path("corpus/c.txt"), "corpus/c.txt")


def test_mixed_inputs_keep_input_order(corpus):
    found = names(discover(["corpus/sub2/d.ogg", "corpus/sub", "corpus/b.wav"]))
    assert found == ["corpus/sub2/d.ogg", "corpus/sub/b.flac", "corpus/sub/deeper/c.MP3", "corpus/b.wav"]


def test_hidden_folder_given_explicitly_is_walked(corpus):
    assert names(discover(["corpus/.cache"])) == ["corpus/.cache/y.wav"]


def test_missing_input_is_returned_not_raised(corpus):
    found = discover(["corpus/b.wav", "nope/missing.wav", "corpus/sub2"])
    assert names(found) == ["corpus/b.wav", "nope/missing.wav", "corpus/sub2/d.ogg"]
    assert found[1].path == Path("nope/missing.wav")


def test_duplicates_keep_the_first_and_are_listed_as_repeats(corpus):
    listing = discover(["corpus/b.wav", "corpus", "corpus/sub", "./corpus//b.wav"])
    found = names(listing)
    assert found.count("corpus/b.wav") == 1 and found.count("corpus/sub/b.flac") == 1
    assert found[0] == "corpus/b.wav" and len(found) == 6
    assert listing.repeats == [  # (the name dropped, the name it is stored under), in listing order
        ("corpus/b.wav", "corpus/b.wav"), ("corpus/sub/b.flac", "corpus/sub/b.flac"),
        ("corpus/sub/deeper/c.MP3", "corpus/sub/deeper/c.MP3"), ("corpus/b.wav", "corpus/b.wav"),
    ]
    assert discover(["corpus"]).repeats == []



def test_the_same_file_spelled_three_ways_is_found_once_under_the_first_name(corpus):
    spellings = ["corpus/b.wav", "./corpus/b.wav", str(corpus / "corpus" / "b.wav")]
    found = discover(spellings)
    assert names(found) == ["corpus/b.wav"] and found[0].path == Path("corpus/b.wav")
    assert names(discover(["./corpus/", str(corpus / "corpus")])) == names(discover(["corpus"]))


def test_empty_inputs(corpus):
    assert discover([]) == []
    assert discover([""]) == []
    (corpus / "nothing").mkdir()
    assert discover(["nothing"]) == []


def test_symlinked_folder_only_with_follow_symlinks(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    touch(tmp_path / "elsewhere", "e.wav")
    touch(tmp_path / "root", "r.wav")
    (tmp_path / "root" / "link").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    assert names(discover(["root"])) == ["root/r.wav"]
    assert names(discover(["root"], follow_symlinks=True)) == ["root/link/e.wav", "root/r.wav"]


def test_symlinked_folder_given_explicitly_is_walked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    touch(tmp_path / "elsewhere", "e.wav")
    Path("alias").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    found = discover(["alias"])
    assert names(found) == ["alias/e.wav"] and found[0].path.is_file()


def test_symlink_loops_terminate(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    touch(tmp_path / "loop", "a.wav", "sub/b.wav")
    (tmp_path / "loop" / "sub" / "up").symlink_to(tmp_path / "loop", target_is_directory=True)
    (tmp_path / "loop" / "self").symlink_to(".", target_is_directory=True)
    assert names(discover(["loop"], follow_symlinks=True)) == ["loop/a.wav", "loop/sub/b.wav"]


def test_symlinked_and_broken_files_are_included(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    touch(tmp_path, "real/target.wav")
    touch(tmp_path / "d", "a.wav")
    (tmp_path / "d" / "b.wav").symlink_to(tmp_path / "real" / "target.wav")
    (tmp_path / "d" / "c.wav").symlink_to(tmp_path / "gone.wav")  # broken: the pipeline reports it
    (tmp_path / "d" / "c.txt").symlink_to(tmp_path / "gone.txt")  # broken, wrong extension
    found = discover(["d"])
    assert names(found) == ["d/a.wav", "d/b.wav", "d/c.wav"] and found.repeats == []
    assert found[2].path.is_symlink() and not found[2].path.exists()
    both = discover(["d", "real"])  # the link's target under its own name: one file, stored under the link's
    assert names(both) == ["d/a.wav", "d/b.wav", "d/c.wav"] and both.repeats == [("real/target.wav", "d/b.wav")]


def test_read_file_list():
    lines = ["  a.wav\n", "\n", "b dir/c.flac\r\n", "   ", "a.wav", "d.mp3"]
    assert read_file_list(lines) == ["a.wav", "b dir/c.flac", "a.wav", "d.mp3"]
    assert read_file_list([]) == []
    assert read_file_list(iter("x\ny\n".splitlines())) == ["x", "y"]


def test_special_files_with_audio_names_are_reported_not_skipped(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    touch(tmp_path / "d", "a.wav")
    os.mkfifo(tmp_path / "d" / "pipe.wav")  # its name says audio: the pipeline fails it with a reason
    os.mkfifo(tmp_path / "d" / "other.fifo")  # not an audio name: ignored like any other file
    assert names(discover(["d"])) == ["d/a.wav", "d/pipe.wav"]


def test_an_unlistable_folder_is_recorded_and_the_walk_goes_on(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    touch(tmp_path / "d", "a.wav", "locked/b.wav", "z/c.wav")
    real_scandir = os.scandir

    def scandir(path):
        if os.path.basename(path) == "locked":
            raise PermissionError(13, "Permission denied", path)
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    found = discover(["d"])
    assert names(found) == ["d/a.wav", "d/locked", "d/z/c.wav"]
    assert found[1].problem == "cannot list folder d/locked: Permission denied"
    assert found[0].problem is None


def test_missing_files_spelled_two_ways_are_one_name(corpus):
    assert names(discover(["nope/x.wav", "./nope//x.wav"])) == ["nope/x.wav"]
