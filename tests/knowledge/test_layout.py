"""Paths under the memory root (EverOS reference §4): hostile names stay inside it (G10)."""

from __future__ import annotations

import unicodedata
from pathlib import Path, PurePosixPath

import pytest

from everos.errors import InvalidInput, PathTraversal
from everos.knowledge import (
    DocumentPath,
    app_id_from_dir,
    document_dir,
    ensure_within,
    knowledge_dir,
    md_kind,
    original_path,
    parse_document_path,
    project_id_from_dir,
    safe_filename,
    sanitize_name,
    scope_dir,
    taxonomy_path,
    topic_filename,
)

DOC_ID = "d_0123456789ab"
ROOT = Path("/srv/everos-root")
HOSTILE = [
    "../x",
    "../../../../etc/passwd",
    "/etc/passwd",
    "a\x00b",
    "a" * 300,
    "é" * 300,
    "a∕b",
    "a／b",
    "a\\..\\b",
    ".",
    "..",
    "...",
    "",
    " ",
    ".taxonomy.md",
    "_original",
    "\u202eevil",
    "line\nbreak",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_sanitize_name_is_one_safe_component(text: str) -> None:
    name = sanitize_name(text, "fb")
    assert name and len(name) <= 50
    assert "/" not in name and "\\" not in name and "\x00" not in name
    assert name not in (".", "..") and not name.startswith(".")
    assert sanitize_name(name, "fb") == name  # idempotent


def test_sanitize_name_follows_everos_rules() -> None:
    assert sanitize_name("Hello World: v2.0!", "fb") == "Hello_World_v2.0"
    assert sanitize_name("机器学习 入门", "fb") == "机器学习_入门"
    assert sanitize_name("a" * 80, "fb") == "a" * 50
    assert sanitize_name("", "doc") == "doc"
    assert sanitize_name("..", "doc") == "doc"
    assert sanitize_name("?!", "doc") == "doc"


def test_sanitize_name_composes_accents_first() -> None:
    """NFC first, so a decomposed é survives instead of losing its accent."""
    assert sanitize_name(unicodedata.normalize("NFD", "café"), "fb") == "café"


def test_sanitize_name_drops_leading_dots() -> None:
    """everos addition: no hidden directories, no clash with .taxonomy.md."""
    assert sanitize_name(".taxonomy.md", "fb") == "taxonomy.md"
    assert sanitize_name("../x", "fb") == "x"


@pytest.mark.parametrize("hostile", HOSTILE)
def test_document_dir_stays_under_knowledge_dir(hostile: str) -> None:
    base = knowledge_dir(ROOT, "default", "default")
    path = document_dir(ROOT, "default", "default", hostile, hostile, DOC_ID)
    relative = path.relative_to(base)
    assert len(relative.parts) == 2
    assert relative.parts[1].endswith(f"_{DOC_ID}")
    assert ".." not in relative.parts


def test_document_dir_keeps_cjk_titles() -> None:
    path = document_dir(ROOT, "default", "default", "Technology", "机器学习 入门", DOC_ID)
    assert path == ROOT / "default_app/default_project/knowledge/Technology" / f"机器学习_入门_{DOC_ID}"


def test_document_dir_fallbacks() -> None:
    path = document_dir(ROOT, "default", "default", None, "", DOC_ID)
    assert path.parts[-2:] == ("Others", f"doc_{DOC_ID}")


def test_document_dir_rejects_bad_doc_id() -> None:
    with pytest.raises(InvalidInput) as info:
        document_dir(ROOT, "default", "default", "Technology", "T", "../../x")
    assert info.value.field == "doc_id"


def test_scope_dir_maps_default_scope() -> None:
    assert scope_dir(ROOT, "default", "default") == ROOT / "default_app" / "default_project"
    assert scope_dir(ROOT, "app1", "proj.x") == ROOT / "app1" / "proj.x"
    assert taxonomy_path(ROOT, "default", "default") == ROOT / "default_app/default_project/knowledge/.taxonomy.md"


@pytest.mark.parametrize("bad", ["..", ".", "../x", "a/b", "", "default_app"])
def test_scope_dir_rejects_bad_app_id(bad: str) -> None:
    with pytest.raises(InvalidInput) as info:
        scope_dir(ROOT, bad, "default")
    assert info.value.field == "app_id"


def test_scope_ids_map_back_from_dirs() -> None:
    assert app_id_from_dir("default_app") == "default"
    assert project_id_from_dir("default_project") == "default"
    assert app_id_from_dir("app1") == "app1"
    with pytest.raises(InvalidInput):
        app_id_from_dir("bad dir")


def test_topic_filename() -> None:
    assert topic_filename(3, "Getting started: install") == "3_Getting_started_install.md"
    assert topic_filename(7, "???") == "7_topic_7.md"
    assert topic_filename(2, "../../etc/passwd") == "2_etcpasswd.md"
    with pytest.raises(ValueError):
        topic_filename(0, "root")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("report.pdf", "report.pdf"),
        ("../../etc/passwd", "passwd"),
        ("/etc/passwd", "passwd"),
        ("C:\\Users\\me\\notes.txt", "notes.txt"),
        ("a∕b／c.md", "abc.md"),
        ("..", "upload"),
        (".", "upload"),
        ("", "upload"),
        ("   ", "upload"),
        (".bashrc", "bashrc"),
        ("dir/", "upload"),
        ("tab\tand\nnewline.md", "tabandnewline.md"),
        ('what?<a>:"b"|*.md', "whatab.md"),
        ("机器学习.md", "机器学习.md"),
        ("\u202etxt.exe", "txt.exe"),
    ],
)
def test_safe_filename(raw: str, expected: str) -> None:
    assert safe_filename(raw) == expected


def test_safe_filename_rejects_nul() -> None:
    with pytest.raises(PathTraversal):
        safe_filename("a\x00b.md")


@pytest.mark.parametrize("stem", ["a" * 300, "é" * 300, "机" * 300])
def test_safe_filename_cuts_long_names_keeping_the_extension(stem: str) -> None:
    name = safe_filename(stem + ".md")
    assert len(name.encode("utf-8")) <= 255
    assert name.endswith(".md")
    name.encode("utf-8").decode("utf-8")  # no character cut in half


def test_safe_filename_long_name_without_extension() -> None:
    assert len(safe_filename("x" * 1000).encode()) == 255


def test_original_path_is_under_original_dir() -> None:
    doc = document_dir(ROOT, "default", "default", "Technology", "T", DOC_ID)
    assert original_path(doc, "../../../x.md") == doc / "_original" / "x.md"
    assert original_path(doc, "..") == doc / "_original" / "upload"


def test_ensure_within_rejects_escapes() -> None:
    assert ensure_within(ROOT, ROOT / "a" / "b") == ROOT / "a" / "b"
    for escaping in (ROOT / ".." / "x", Path("/etc/passwd"), ROOT / "a" / ".." / ".." / "x", Path("/srv/everos-root2")):
        with pytest.raises(PathTraversal):
            ensure_within(ROOT, escaping)


def test_parse_document_path_round_trips_document_dir() -> None:
    doc = document_dir(ROOT, "app1", "default", "Technology", "机器学习 入门", DOC_ID)
    relative = PurePosixPath((doc / "index.md").relative_to(ROOT).as_posix())
    parts = parse_document_path(relative)
    assert parts == DocumentPath("app1", "default_project", "Technology", DOC_ID)
    assert (app_id_from_dir(parts.app_dir), project_id_from_dir(parts.project_dir)) == ("app1", "default")


def test_parse_document_path_takes_the_last_doc_id() -> None:
    """A title that itself looks like an id does not confuse the parser."""
    rel = f"a/b/knowledge/C/x_d_aaaaaaaaaaaa_{DOC_ID}/1_t.md"
    assert parse_document_path(rel) == DocumentPath("a", "b", "C", DOC_ID)


@pytest.mark.parametrize(
    ("relpath", "kind"),
    [
        (f"default_app/default_project/knowledge/Tech/T_{DOC_ID}/index.md", "knowledge_document"),
        (f"default_app/default_project/knowledge/Tech/T_{DOC_ID}/1_Intro.md", "knowledge_topic"),
        (f"default_app/default_project/knowledge/Tech/T_{DOC_ID}/12.md", "knowledge_topic"),
    ],
)
def test_md_kind_matches_everos_globs(relpath: str, kind: str) -> None:
    assert md_kind(relpath) == kind
    assert parse_document_path(relpath) is not None


@pytest.mark.parametrize(
    "relpath",
    [
        "default_app/default_project/knowledge/.taxonomy.md",
        f"default_app/default_project/knowledge/Tech/T_{DOC_ID}/_original/1_x.md",
        f"default_app/default_project/knowledge/Tech/T_{DOC_ID}/notes.md",
        f"default_app/default_project/knowledge/Tech/T_{DOC_ID}/1_x.txt",
        f"extra/default_app/default_project/knowledge/Tech/T_{DOC_ID}/index.md",
        f"default_app/default_project/users/Tech/T_{DOC_ID}/index.md",
        f"/default_app/default_project/knowledge/Tech/T_{DOC_ID}/index.md",
        f"default_app/default_project/knowledge/.Tech/T_{DOC_ID}/index.md",
        f"default_app/default_project/knowledge/Tech/.T_{DOC_ID}.backup/index.md",
        f"../default_project/knowledge/Tech/T_{DOC_ID}/index.md",
    ],
)
def test_md_kind_ignores_other_files(relpath: str) -> None:
    assert md_kind(relpath) is None
    assert parse_document_path(relpath) is None


def test_parse_document_path_needs_a_doc_id_suffix() -> None:
    assert md_kind("a/b/knowledge/C/handmade/index.md") == "knowledge_document"
    assert parse_document_path("a/b/knowledge/C/handmade/index.md") is None
    assert parse_document_path(f"a/b/knowledge/C/T_{DOC_ID}\n/index.md") is None
