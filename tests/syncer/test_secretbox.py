"""Sealing secrets at rest: the key file, authenticated encryption, rotation."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from syncer import secretbox
from syncer.secretbox import KeyFileError, SecretBox, SecretBoxError

DOC = "apiVersion: v1\nusers:\n- name: u\n  user: {token: s3cr3t-token}\n"


@pytest.fixture
def key_path(tmp_path: Path) -> Path:
    path = tmp_path / "data" / secretbox.KEY_FILE_NAME
    assert secretbox.create_key_file(path)
    return path


def test_key_file_is_created_once_and_private(key_path: Path) -> None:
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    before = key_path.read_bytes()
    assert not secretbox.create_key_file(key_path)
    assert key_path.read_bytes() == before
    assert len(SecretBox(key_path).key_ids) == 1
    assert [p.name for p in key_path.parent.iterdir()] == [secretbox.KEY_FILE_NAME]


def test_sealed_values_open_only_where_they_belong(key_path: Path) -> None:
    box = SecretBox(key_path)
    sealed = box.seal(DOC, context="clusters/a/kubeconfig")
    assert sealed.startswith(f"kpenc1:{box.key_ids[0]}:") and "s3cr3t" not in sealed
    assert sealed != box.seal(DOC, context="clusters/a/kubeconfig")  # a fresh nonce each time
    assert box.open(sealed, context="clusters/a/kubeconfig") == DOC
    with pytest.raises(SecretBoxError, match="altered, or sealed for another place"):
        box.open(sealed, context="clusters/b/kubeconfig")
    assert "s3cr3t" not in repr(box) and "secret=" not in repr(secretbox.new_key())


def test_tampered_values_are_refused(key_path: Path) -> None:
    box = SecretBox(key_path)
    sealed = box.seal(DOC, context="c")
    flipped = sealed[:-6] + ("A" if sealed[-6] != "A" else "B") + sealed[-5:]
    with pytest.raises(SecretBoxError, match="altered"):
        box.open(flipped, context="c")
    for damaged in (sealed[:30], sealed.replace(":", ";", 2), DOC, sealed + "!"):
        with pytest.raises(SecretBoxError):
            box.open(damaged, context="c")


def test_rotation_newest_seals_all_open(key_path: Path) -> None:
    box, other_process = SecretBox(key_path), SecretBox(key_path)
    old = box.seal(DOC, context="c")
    new_key = secretbox.add_key(key_path)
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    # Both boxes notice the changed file: the new key seals, the old one still opens.
    new = other_process.seal(DOC, context="c")
    assert secretbox.key_id_of(new) == new_key.id != secretbox.key_id_of(old)
    assert box.open(new, context="c") == box.open(old, context="c") == DOC
    old_id = secretbox.key_id_of(old)
    assert secretbox.drop_keys(key_path, {old_id or "", new_key.id}) == [old_id]  # never the newest
    assert box.key_ids == [new_key.id]
    with pytest.raises(SecretBoxError, match=f"sealed with key {old_id}, which key file .* does not hold"):
        box.open(old, context="c")


def test_unsafe_key_files_are_refused(key_path: Path, tmp_path: Path) -> None:
    for mode in (0o644, 0o640, 0o604, 0o620):
        key_path.chmod(mode)
        with pytest.raises(KeyFileError, match=f"mode 0{mode:o} lets group or others at it; run `chmod 600"):
            SecretBox(key_path)
    key_path.chmod(0o600)
    link = tmp_path / "link.keys"
    link.symlink_to(key_path)
    with pytest.raises(KeyFileError, match="is a symbolic link"):
        SecretBox(link)
    assert not secretbox.create_key_file(link)  # an existing link is never written through
    with pytest.raises(KeyFileError, match="does not exist"):
        SecretBox(tmp_path / "missing")


def test_a_running_box_refuses_a_key_file_made_unsafe(key_path: Path) -> None:
    box = SecretBox(key_path)
    sealed = box.seal(DOC, context="c")
    key_path.chmod(0o644)
    os.utime(key_path, ns=(1, 1))  # a changed stamp: the box re-reads and re-checks the file
    with pytest.raises(KeyFileError, match="lets group or others at it"):
        box.open(sealed, context="c")


def test_malformed_key_files_name_the_line_not_the_key(tmp_path: Path) -> None:
    path = tmp_path / "k"
    for content, message in [("", "holds no key"), ("# only a comment\n", "holds no key"),
                             ("abcdef01 c2hvcnQ=\n", "line 1: expected"),
                             ("\nxyz not-a-key-at-all\n", "line 2: expected")]:
        path.write_text(content)
        path.chmod(0o600)
        with pytest.raises(KeyFileError, match=message) as refused:
            SecretBox(path)
        assert "c2hvcnQ" not in str(refused.value)
    key = secretbox.new_key()
    line = f"{key.id} {base64.b64encode(key.secret).decode()}\n"
    path.write_text(line + line)
    with pytest.raises(KeyFileError, match="appears twice"):
        SecretBox(path)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file away")
def test_a_key_file_of_another_user_is_refused(key_path: Path) -> None:
    os.chown(key_path, 65534, 65534)
    with pytest.raises(KeyFileError, match=r"it is owned by (nobody|65534), not by root who runs kubepedia; "
                                           r"run `chown root "):
        SecretBox(key_path)
