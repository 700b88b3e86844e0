"""Hypothesis strategies that reach deep: inputs shaped like the real ones, then bent.

Random text rarely gets past a parser's first check, so each strategy builds the structure the
target expects (a multipart body with a file part, a markdown file with front matter and
headings, a topic-tree answer, a search body, an ``everos.toml``) and puts hostile values in its
fields: wrong types, missing keys, huge numbers, lone surrogates, NUL bytes, path traversal,
look-alike slashes, control characters, byte-order marks, binary signatures.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

from everos.config._settings import SECTIONS
from everos.config._settings import section_class
from everos.config._validate import section_fields
from fuzz.targets.upload import UploadRequest

__all__ = [
    "config_environ",
    "config_toml",
    "embeddings_answers",
    "facts_answers",
    "json_values",
    "markdown_texts",
    "model_texts",
    "multipart_requests",
    "query_args",
    "rerank_answers",
    "request_bodies",
    "search_bodies",
    "topic_answers",
]

# -- building blocks --------------------------------------------------------------------------------

MOSTLY = st.sampled_from([True, True, True, False])
"""True three times in four (hypothesis draws small integers and the first choices more often)."""
HOSTILE_TEXT = st.sampled_from([
    "", " ", "\t\n", "\x00", "a\x00b", "\ud800", "x\udfff", "\ufeff", "\u202e", "\u2028", "\x85", "\x7f",
    "..", "../../etc/passwd", "..\\..\\boot.ini", "/abs", "a\u2215b", "a\uff0fb", "CON", "nul.txt", ".hidden",
    "default_app", "default_project", "-", "@", "a" * 256, "é" * 300, "😀" * 70, "${HOME}", "%00", "'\"",
    "---", "- a", "key: value", "null", "yes", "2024-05-01", "1e400", "NaN", "Infinity", "-0", "0x10",
    "²", "٣", "１２", "d_0123456789ab", "d_0123456789ab_1", "t_0123456789ab", "Technology", "Others",
])
NUMBERS = st.one_of(
    st.integers(-(2**70), 2**70), st.sampled_from([0, 1, -1, 2**31, 2**53 + 1, 10**400, -(10**1000)]),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([1e308, -1e-308, 0.5, 1e400]),
)
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, st.text(max_size=40), HOSTILE_TEXT)


def json_values(max_leaves: int = 12) -> st.SearchStrategy[Any]:
    """Any JSON-like value (hostile scalars, nested lists and objects)."""
    return st.recursive(SCALARS, lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.one_of(st.text(max_size=8), HOSTILE_TEXT), inner, max_size=4)),
        max_leaves=max_leaves)


def _deep(depth: int, opener: str = "[", closer: str = "]") -> str:
    return opener * depth + closer * depth


DEEP_JSON = st.sampled_from([_deep(5000), '{"a":' + _deep(5000) + "}", _deep(200000),
                             '{"topics": ' + _deep(3000) + "}"])

# -- uploads ----------------------------------------------------------------------------------------

FILE_NAMES = st.one_of(HOSTILE_TEXT, st.sampled_from(["a.md", "notes.txt", "x.pdf", "d.docx", "p.html",
                                                      "A" * 300 + ".md", "a\x00.md", "C:\\dir\\a.md", "ｘ.md",
                                                      "a.md\r\nX-Injected: 1"]),
                       st.text(max_size=30))
FILE_BODIES = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.sampled_from([
        b"# Title\n\nSome prose.\n", b"", b"   \n\t", b"\x00\x01\x02", b"\xff\xfe" + "hi".encode("utf-16-le"),
        b"\xef\xbb\xbf# BOM\n", b"%PDF-1.4\n", b"PK\x03\x04garbage", b"\x89PNG\r\n\x1a\n", b"{\\rtf1", b"\x1f\x8b\x08",
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + "EncryptedPackage".encode("utf-16-le"), b"<!doctype html><p>x",
        b"\xed\xa0\x80", b"\xc3\x28", b"a" * 5000, "日本語のテキスト".encode("utf-8"),
    ]),
)
GOOD_TITLES = st.one_of(st.sampled_from(["Guide", "  Solar guide ", "机器学习", "R&D notes (v2)"]),
                        st.text(st.characters(categories=["L", "N"]), min_size=1, max_size=20))
GOOD_BODIES = st.one_of(st.sampled_from([b"# Title\n\nSome prose.\n", "Text: 日本語, émigré.".encode("utf-8"),
                                         b"\xff\xfe" + "UTF-16 text".encode("utf-16-le"), b"%PDF-1.7\n",
                                         b"PK\x03\x04\x14\x00", b"x" * 4097, b"\xc3\x28 invalid", b" \n "]),
                        st.text(min_size=1, max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")))
FORM_VALUES = st.one_of(HOSTILE_TEXT, st.text(max_size=40),
                        st.sampled_from(["Guide", "  Guide  ", "Technology", "acme"]))
# RFC 2046's boundary characters (no space at the end), then ones that break the header.
_BCHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789'()+_,-./:=?"
BOUNDARIES = st.one_of(st.sampled_from(["XyZ", "----WebKitFormBoundary7MA4YWxkTrZu0gW"]),
                       st.text(_BCHARS, min_size=1, max_size=70),
                       st.sampled_from(["a" * 71, "a" * 200, "b c", "\"quoted\"", "=", "é", "x;y", "\\"]),
                       st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=20))


def _header_bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


@st.composite
def _part(draw: st.DrawFn) -> bytes:
    name = draw(st.sampled_from(["file", "title", "source_type", "category_id", "app_id", "project_id", "other",
                                 "", "fi\"le"]))
    disposition = f'form-data; name="{name}"'
    if name == "file" or draw(st.booleans()):
        filename = draw(FILE_NAMES)
        style = draw(st.sampled_from(["plain", "star", "both", "none", "unquoted"]))
        if style == "plain":
            disposition += f'; filename="{filename}"'
        elif style == "star":
            disposition += "; filename*=UTF-8''" + "".join(f"%{b:02X}" for b in _header_bytes(filename))
        elif style == "both":
            disposition += f'; filename="x.txt"; filename*=UTF-8\'\'{filename}'
        elif style == "unquoted":
            disposition += f"; filename={filename}"
    headers = [f"Content-Disposition: {disposition}"]
    if draw(st.booleans()):
        headers.append("Content-Type: " + draw(st.sampled_from([
            "text/markdown", "text/plain; charset=utf-16", "application/pdf", "application/octet-stream",
            "text/plain; charset=iso-8859-1", "multipart/mixed; boundary=inner", "\x00", ""])))
    body = draw(FILE_BODIES) if name == "file" else _header_bytes(draw(FORM_VALUES))
    return _header_bytes("\r\n".join(headers)) + b"\r\n\r\n" + body


@st.composite
def multipart_requests(draw: st.DrawFn) -> UploadRequest:
    """A multipart upload: usually well framed with a title and a file part, with hostile field
    values, file names, file bytes, boundaries and framing faults."""
    boundary = draw(BOUNDARIES)
    parts = draw(st.lists(_part(), max_size=draw(st.sampled_from([0, 0, 2, 6]))))
    if draw(MOSTLY):  # most bodies carry the two parts an upload needs, often plain ones
        plain = draw(st.booleans())
        title = draw(GOOD_TITLES if plain and draw(MOSTLY) else FORM_VALUES)
        filename = draw(st.sampled_from(["a.md", "notes.txt", "x"]) if plain else FILE_NAMES)
        data = draw(GOOD_BODIES if plain and draw(MOSTLY) else FILE_BODIES)
        parts.insert(0, _header_bytes('Content-Disposition: form-data; name="title"') + b"\r\n\r\n"
                     + _header_bytes(title))
        parts.append(_header_bytes('Content-Disposition: form-data; name="file"; filename="')
                     + _header_bytes(filename) + b'"\r\n\r\n' + data)
    delimiter = b"--" + _header_bytes(boundary)
    body = b"".join(delimiter + b"\r\n" + part + b"\r\n" for part in parts) + delimiter + b"--\r\n"
    fault = draw(st.sampled_from(["none"] * 6 + ["truncate", "no-final", "lf-only", "garbage", "huge-part"]))
    if fault == "truncate":
        body = body[: draw(st.integers(0, len(body)))]
    elif fault == "no-final":
        body = body.rsplit(delimiter + b"--", 1)[0]
    elif fault == "lf-only":
        body = body.replace(b"\r\n", b"\n")
    elif fault == "garbage":
        body = draw(st.binary(max_size=40)) + body + draw(st.binary(max_size=40))
    elif fault == "huge-part":
        body = body.replace(b"\r\n\r\n", b"\r\n\r\n" + b"x" * 5000, 1)
    content_type = draw(st.one_of(
        st.just(f"multipart/form-data; boundary={boundary}"), st.just(f"multipart/form-data; boundary={boundary}"),
        st.just(f'multipart/form-data; boundary="{boundary}"'),
        st.sampled_from(["multipart/form-data", "text/plain", "application/x-www-form-urlencoded", "",
                         "multipart/form-data; boundary=", "multipart/form-data; boundary=other"]),
    ))
    query = draw(st.dictionaries(st.sampled_from(["app_id", "project_id", "title"]), FORM_VALUES, max_size=2))
    # The test client encodes the query string as UTF-8: no lone surrogates there.
    return UploadRequest(body, content_type,
                         {k: v for k, v in query.items() if "\ud800" not in v and "\udfff" not in v})

# -- markdown ---------------------------------------------------------------------------------------

_LINES = st.one_of(
    st.text(max_size=60), HOSTILE_TEXT,
    st.builds(lambda n, t: "#" * n + " " + t, st.integers(1, 8), st.text(max_size=30)),
    st.builds(lambda t, u: f"{t}\n{u}", st.text(min_size=1, max_size=20), st.sampled_from(["===", "---", "- - -"])),
    st.sampled_from(["```", "~~~", "```python", "    indented code", "> quote", "- item", "1. item", "<!-- c -->",
                     "<div>", "</div>", "[label]: http://x", "[label]", "[![b](i.svg)](l)", "***", "|a|b|", "\t",
                     "---", "...", "# ", "#", "######## too deep", "\\# escaped", "[x][label]", "  \n"]),
)
_FRONT_KEYS = st.sampled_from(["type", "id", "doc_id", "node_id", "title", "category_id", "topic_index",
                               "topic_name", "topic_path", "summary", "depth", "parent_node_id",
                               "children_node_ids", "content_labels", "keywords", "language", "source_name",
                               "source_type", "schema_version"])
_YAML_VALUES = st.one_of(
    st.sampled_from(["knowledge_document", "knowledge_topic", "d_0123456789ab", "d_0123456789ab_1",
                     "d_0123456789ab_2", "d_0123456789ab_" + "1" * 5000, "d_0123456789ab_²", "'²'", "'٣'", "'7'",
                     "2", "0", "-1", "1e400", ".nan", "~", "null", "[]", "[d_0123456789ab_3]", "{a: 1}", "&a [*a]",
                     "!!python/object:os.system", "2024-05-01", "2024-13-45", "9" * 5000, "'" + "9" * 5000 + "'",
                     "|\n  block\n  text", "[" * 3000, "\"\\ud800\"", "yes"]),
    st.text(max_size=30).map(json.dumps),
)


@st.composite
def markdown_texts(draw: st.DrawFn) -> str:
    """A markdown file: often an EverOS front matter (valid, bent or broken) and a body of
    headings, fences, lists, definitions, badges and prose."""
    text = ""
    if draw(st.integers(0, 3)):
        kind = draw(st.sampled_from(["knowledge_document", "knowledge_topic"]))
        meta = {"type": kind, "id": "d_0123456789ab" if kind == "knowledge_document" else "d_0123456789ab_1",
                "title": "T", "topic_name": "N"}
        lines = [f"{k}: {json.dumps(v)}" for k, v in meta.items() if draw(st.integers(0, 5))]
        lines += [f"{key}: {value}" for key, value in draw(st.lists(st.tuples(_FRONT_KEYS, _YAML_VALUES), max_size=5))]
        close = draw(st.sampled_from(["---", "---", "...", "", "--- "]))
        text = "---\n" + "\n".join(lines) + f"\n{close}\n"
    body = "\n".join(draw(st.lists(_LINES, max_size=25)))
    newline = draw(st.sampled_from(["\n", "\n", "\r\n", "\r"]))
    return draw(st.sampled_from(["", "\ufeff"])) + (text + body).replace("\n", newline)

# -- model answers ----------------------------------------------------------------------------------

_REFS = st.one_of(st.sampled_from(["0", "0-2", "1-2", "2", "0,1,2", "2-0", "0-99", "-1", " 1 - 2 ", "x", "", "1-"]),
                  st.lists(st.one_of(st.integers(-2, 5), st.booleans(), st.text(max_size=4)), max_size=3),
                  SCALARS)


def _topic(children: st.SearchStrategy[Any] | None) -> st.SearchStrategy[Any]:
    return st.fixed_dictionaries({}, optional={
        "topic": st.one_of(st.text(max_size=150), SCALARS), "summary": st.one_of(st.text(max_size=40), SCALARS),
        "block_refs": _REFS, "content_labels": st.one_of(st.lists(SCALARS, max_size=3), SCALARS),
        "facts": st.one_of(st.lists(st.one_of(st.text(max_size=600), SCALARS), max_size=10), SCALARS),
        "children": st.one_of(st.just([]) if children is None else st.lists(children, max_size=3), SCALARS),
    })


TOPIC_TREES = st.recursive(_topic(None), _topic, max_leaves=8)


def topic_answers() -> st.SearchStrategy[Any]:
    """A topic-tree answer object: the keys the prompt asks for, each sometimes of a wrong type."""
    return st.one_of(
        st.fixed_dictionaries({"topics": st.lists(TOPIC_TREES, max_size=4)}, optional={
            "language": SCALARS, "summary": SCALARS, "keywords": st.one_of(st.lists(SCALARS, max_size=7), SCALARS),
            "category_id": st.one_of(st.sampled_from(["Technology", "Finance", "", "Nope", " Technology "]), SCALARS),
        }),
        json_values(),
    )


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, allow_nan=True)


def model_texts(answers: st.SearchStrategy[Any] | None = None) -> st.SearchStrategy[str]:
    """What a chat model writes around a JSON answer: bare, fenced, after a ``<think>`` block,
    truncated, several objects, nested far too deep, or no JSON at all."""
    answers = topic_answers() if answers is None else answers

    @st.composite
    def texts(draw: st.DrawFn) -> str:
        answer = _dumps(draw(answers))
        wrap = draw(st.sampled_from(["bare", "fence", "think", "prose", "truncated", "two", "deep", "text"]))
        if wrap == "fence":
            return f"Here:\n```json\n{answer}\n```"
        if wrap == "think":
            return f"<think>{{\"topics\": 1}}</think>{answer}"
        if wrap == "prose":
            return f"Sure! {answer} Anything else?"
        if wrap == "truncated":
            return answer[: draw(st.integers(0, len(answer)))]
        if wrap == "two":
            return f"{{not json}} {answer} {answer}"
        if wrap == "deep":
            return draw(DEEP_JSON)
        if wrap == "text":
            return draw(st.text(max_size=80))
        return answer

    return texts()


def facts_answers() -> st.SearchStrategy[Any]:
    """A batched facts answer ``{"passages": [{"passage": n, "facts": [...]}]}``, bent."""
    entry = st.fixed_dictionaries({}, optional={"passage": st.one_of(st.integers(-1, 6), SCALARS),
                                                "facts": st.one_of(st.lists(st.one_of(st.text(max_size=50), SCALARS),
                                                                            max_size=12), SCALARS)})
    return st.one_of(st.fixed_dictionaries({"passages": st.one_of(st.lists(st.one_of(entry, SCALARS), max_size=6),
                                                                  SCALARS)}), json_values())


def embeddings_answers() -> st.SearchStrategy[Any]:
    """An embeddings answer body ``{"data": [{"embedding": [...], "index": i}], "usage": ...}``, bent."""
    vector = st.one_of(st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True), NUMBERS), max_size=6),
                       SCALARS)
    item = st.fixed_dictionaries({}, optional={"embedding": vector, "index": st.one_of(st.integers(-1, 4), SCALARS)})
    usage = st.fixed_dictionaries({}, optional={"prompt_tokens": NUMBERS, "completion_tokens": SCALARS})
    return st.one_of(st.fixed_dictionaries({"data": st.one_of(st.lists(item, max_size=4), SCALARS)},
                                           optional={"usage": st.one_of(usage, SCALARS)}), json_values())


def rerank_answers() -> st.SearchStrategy[Any]:
    """A rerank answer in each accepted shape (``results``, ``data``, a bare list), bent."""
    item = st.fixed_dictionaries({}, optional={"index": st.one_of(st.integers(-1, 5), SCALARS),
                                               "relevance_score": NUMBERS, "score": NUMBERS})
    items = st.lists(st.one_of(item, SCALARS), max_size=5)
    return st.one_of(st.fixed_dictionaries({"results": items}), st.fixed_dictionaries({"data": items}), items,
                     json_values())


def chat_answers() -> st.SearchStrategy[Any]:
    """A chat-completions answer ``{"choices": [{"message": {"content": ...}}]}``, bent: content
    parts, wrong types, no choices."""
    content = st.one_of(model_texts(), SCALARS, st.lists(st.one_of(
        st.fixed_dictionaries({"type": st.just("text"), "text": st.one_of(st.text(max_size=20), SCALARS)}), SCALARS),
        max_size=3))
    message = st.fixed_dictionaries({}, optional={"role": st.just("assistant"), "content": content})
    choice = st.fixed_dictionaries({}, optional={"index": SCALARS, "message": st.one_of(message, SCALARS)})
    usage = st.fixed_dictionaries({}, optional={"prompt_tokens": NUMBERS, "completion_tokens": NUMBERS})
    return st.one_of(st.fixed_dictionaries({"choices": st.one_of(st.lists(choice, max_size=2), SCALARS)},
                                           optional={"usage": st.one_of(usage, SCALARS)}), json_values())


def answer_bodies() -> st.SearchStrategy[bytes]:
    """An answer body as bytes: one of the shapes above as JSON, or broken JSON."""
    shaped = st.one_of(chat_answers(), embeddings_answers(), rerank_answers()).map(
        lambda value: _dumps(value).encode("utf-8", "surrogatepass"))
    return st.one_of(shaped, DEEP_JSON.map(str.encode), st.binary(max_size=60))


def stream_bodies() -> st.SearchStrategy[bytes]:
    """Server-sent events of a streamed chat answer, bent: bad chunks, errors, no ``[DONE]``."""
    chunk = st.one_of(
        st.builds(lambda c, f: _dumps({"choices": [{"index": 0, "delta": {"content": c}, "finish_reason": f}]}),
                  st.one_of(st.text(max_size=20), SCALARS), st.one_of(st.none(), st.just("stop"))),
        json_values().map(_dumps), st.sampled_from(["[DONE]", "{bad", '{"error": "boom"}', _deep(5000)]),
    )
    lines = st.lists(st.one_of(chunk.map(lambda c: f"data: {c}"), st.sampled_from([": comment", "event: x", ""])),
                     max_size=6)
    return lines.map(lambda ls: "\n".join(ls).encode("utf-8", "surrogatepass"))

# -- requests ---------------------------------------------------------------------------------------

_SEARCH_FIELDS = {
    "query": st.one_of(st.text(max_size=30), HOSTILE_TEXT, st.just("x" * 2001), st.just(" " * 3000 + "a"), SCALARS),
    "method": st.one_of(st.sampled_from(["keyword", "vector", "hybrid", "Hybrid", ""]), SCALARS),
    "top_k": st.one_of(st.integers(-2, 120), NUMBERS, SCALARS),
    "score_threshold": st.one_of(NUMBERS, SCALARS),
    "include_content": st.one_of(st.booleans(), SCALARS),
    "app_id": st.one_of(st.sampled_from(["default", "acme", "a.b", ".x"]), HOSTILE_TEXT, SCALARS),
    "project_id": st.one_of(st.sampled_from(["default", "p1"]), HOSTILE_TEXT, SCALARS),
}


def search_bodies() -> st.SearchStrategy[dict[str, Any]]:
    """A ``POST /search`` body: the EverOS fields, each sometimes hostile or of the wrong type,
    plus unknown fields."""
    return st.builds(lambda known, extra: {**extra, **known}, st.fixed_dictionaries({}, optional=_SEARCH_FIELDS),
                     st.dictionaries(st.text(max_size=8), SCALARS, max_size=2))


_OTHER_FIELDS = {
    "title": st.one_of(st.text(max_size=30), HOSTILE_TEXT, st.just("x" * 501), SCALARS),
    "content": st.one_of(st.text(max_size=30), HOSTILE_TEXT, SCALARS),
    "filename": st.one_of(FILE_NAMES, SCALARS), "source_type": st.one_of(HOSTILE_TEXT, SCALARS),
    "category_id": st.one_of(st.sampled_from(["Technology", "Others", "a b", "x" * 51]), HOSTILE_TEXT, SCALARS),
    "apply": st.one_of(st.booleans(), SCALARS),
    "app_id": _SEARCH_FIELDS["app_id"], "project_id": _SEARCH_FIELDS["project_id"],
}


def request_bodies() -> st.SearchStrategy[dict[str, Any]]:
    """A JSON body for the write models (PATCH, add-document, cascade fix, upload form fields)."""
    return st.builds(lambda known, extra: {**extra, **known}, st.fixed_dictionaries({}, optional=_OTHER_FIELDS),
                     st.dictionaries(st.text(max_size=8), SCALARS, max_size=2))


def query_args() -> st.SearchStrategy[dict[str, str]]:
    """A query string's first values: the listing parameters as text, numbers in odd notations."""
    number_text = st.one_of(st.integers(-5, 2_000_000).map(str), st.sampled_from([
        "1_0", " 3 ", "+2", "٣", "²", "0x10", "1e3", "9" * 5000, "", "-0", "１２"]), st.text(max_size=6))
    fields = {"page": number_text, "page_size": number_text,
              "sort_by": st.sampled_from(["created_at", "updated_at", "title", "x", ""]),
              "sort_order": st.sampled_from(["asc", "desc", "ASC", ""]),
              "status": st.sampled_from(["queued", "running", "succeeded", "failed", "dead", "x", ""]),
              "category_id": st.one_of(st.text(max_size=10), HOSTILE_TEXT),
              "app_id": st.one_of(st.text(max_size=10), HOSTILE_TEXT), "project_id": st.text(max_size=10)}
    return st.fixed_dictionaries({}, optional=fields)


PATH_IDS = st.one_of(
    HOSTILE_TEXT, st.text(max_size=40),
    st.builds(lambda h, n: f"d_{h}_{n}", st.text("0123456789abcdef", min_size=10, max_size=34),
              st.one_of(st.integers(0, 10**12).map(str), st.sampled_from(["1" * 5000, "٣", "", "01", "１"]))),
    st.builds(lambda p, h: f"{p}{h}", st.sampled_from(["d_", "t_", "D_"]),
              st.text("0123456789abcdefABCDEF\n", min_size=10, max_size=34)),
)

# -- configuration ----------------------------------------------------------------------------------

_CONFIG_KEYS = [(section, key) for section in SECTIONS for key in section_fields(section_class(section))]
_TOML_VALUES = st.one_of(
    st.sampled_from(["0", "1", "-1", "0.0", "1e400", "nan", "inf", "-inf", "+inf", "9" * 400, "9" * 5000,
                     "true", '""', '"auto"', '"UTC"', '"../etc"', "[]", '["http://a"]', "{}", '{a = 1979-05-27}',
                     '{a = {b = [1, "x"]}}', "1979-05-27T07:32:00Z", '"\\u0000"', "'''multi\nline'''",
                     '"-1,1"', '"0.5"', '"0.2,0.1"', '"Europe/Berlin"', '"\\uD800"', "[" * 3000 + "]" * 3000,
                     "0x7fffffffffffffff", "1_000"]),
    st.integers().map(str), st.floats().map(lambda f: repr(f) if f == f and abs(f) != float("inf") else "nan"),
    st.text(max_size=20).map(json.dumps),
)


@st.composite
def config_toml(draw: st.DrawFn) -> bytes:
    """An ``everos.toml``: known sections and keys with values of the right or a wrong type,
    unknown sections and keys, EverOS's ignored sections, and broken TOML."""
    lines: list[str] = []
    for _ in range(draw(st.integers(0, 6))):
        section, key = draw(st.sampled_from(_CONFIG_KEYS))
        if draw(st.integers(0, 9)) == 0:
            section = draw(st.sampled_from(["nope", "search", "knowledge.search.x", "llm.extra", ""]))
        if draw(st.integers(0, 9)) == 0:
            key = draw(st.sampled_from(["nope", "max_input_tokens", "sync_wait_seconds"]))
        lines += [f"[{section}]", f"{key} = {draw(_TOML_VALUES)}"]
    text = "\n".join(lines) + "\n"
    mode = draw(st.sampled_from(["ok"] * 8 + ["top-level", "garbage", "bytes"]))
    if mode == "top-level":
        text = "port = 1\n" + text
    elif mode == "garbage":
        text += draw(st.text(max_size=20))
    data = text.encode("utf-8", "surrogatepass")
    return data + draw(st.binary(max_size=8)) if mode == "bytes" else data


def config_environ() -> st.SearchStrategy[dict[str, str]]:
    """``EVEROS_<SECTION>__<KEY>`` variables: known names with values to parse (numbers, JSON
    tables, booleans in words) and unknown names, as ``os.environ`` holds them (undecodable
    bytes as surrogate escapes)."""
    names = st.one_of(
        st.sampled_from(_CONFIG_KEYS).map(lambda sk: f"EVEROS_{sk[0].replace('.', '__').upper()}__{sk[1].upper()}"),
        st.sampled_from(["EVEROS_NOPE__X", "EVEROS_LLM__NOPE", "EVEROS_SEARCH__X", "EVEROS___", "EVEROS_LLM__",
                         "EVEROS_ROOT", "EVEROS_LLM__MAX_INPUT_TOKENS", "OTHER"]))
    values = st.one_of(
        st.sampled_from(["1", "0", "-1", "yes", "off", "nan", "inf", "1e400", "9" * 5000, "{}", "[]", '{"a": null}',
                         '{"😀": 1}', '{"a": 1e999}', "[\"http://localhost:3000\"]", "[1]", "\udcff", "x\udc80y",
                         _deep(100000), " 7 ", "0.5", "auto", "UTC", "Mars/Base", "-1,1", "0.3,0.2"]),
        json_values(6).map(_dumps), st.text(max_size=12))
    return st.dictionaries(names, values, max_size=4)
