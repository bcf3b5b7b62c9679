"""The SKD HTTP client against a misbehaving OpenAI-compatible server: one-line errors, a whole-call
deadline, no redirect followed with the key, and the key never printed."""

from __future__ import annotations

import json
import socket
import threading
import time
from typing import Callable, Iterator

import pytest

from lsc.errors import LscError
from lsc.language.skd import make_skd, redact

KEY = "sk-hostile-test-0123456789abcdef"
PAIRS = [("there is a dog on the grass", "a dog on grass")]
OK_BODY = json.dumps({"choices": [{"message": {"content": "a dog on grass"}}]}).encode()


def _read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")), 0)
    while len(body) < length:
        body += conn.recv(65536)
    return head


class RawServer:
    """A TCP server whose every connection is answered by `handler(conn, request_head)`."""

    def __init__(self, handler: Callable[[socket.socket, bytes], None]) -> None:
        self.handler = handler
        self.heads: list[bytes] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        try:
            head = _read_request(conn)
            self.heads.append(head)
            self.handler(conn, head)
        except OSError:
            pass
        finally:
            conn.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


@pytest.fixture
def serve() -> Iterator[Callable[[Callable[[socket.socket, bytes], None]], RawServer]]:
    servers: list[RawServer] = []

    def make(handler: Callable[[socket.socket, bytes], None]) -> RawServer:
        servers.append(RawServer(handler))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def _skd(url: str, **kw: object):
    return make_skd({"engine": "openai", "base_url": url, "api_key_env": "LSC_HOSTILE_KEY", "retries": 1,
                     "timeout_s": 3, **kw})


def _fails(url: str, monkeypatch: pytest.MonkeyPatch, **kw: object) -> str:
    monkeypatch.setenv("LSC_HOSTILE_KEY", KEY)
    with pytest.raises(LscError) as info:
        _skd(url, **kw).rewrite("there is a dog on the grass", PAIRS)
    msg = str(info.value)
    assert "\n" not in msg and KEY not in msg and "sk-hostile" not in msg, msg
    return msg


def test_redirect_is_not_followed_with_the_key(serve, monkeypatch) -> None:
    other = serve(lambda c, h: c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(OK_BODY) + OK_BODY))
    location = f"http://localhost:{other.port}/v1/chat/completions".encode()
    first = serve(lambda c, h: c.sendall(b"HTTP/1.1 307 Temporary Redirect\r\nLocation: " + location +
                                         b"\r\nContent-Length: 0\r\n\r\n"))
    msg = _fails(first.url, monkeypatch)
    assert "redirect (HTTP 307)" in msg and "skd.base_url" in msg
    assert other.heads == []  # nothing, and so no Authorization header, reached the other origin
    assert b"authorization: bearer " + KEY.encode() in first.heads[0].lower()


def test_trickling_server_is_cut_at_the_deadline(serve, monkeypatch) -> None:
    def trickle(conn: socket.socket, head: bytes) -> None:
        for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 99999\r\n\r\n" + b"x" * 99999:
            conn.sendall(bytes([byte]))
            time.sleep(0.1)

    t0 = time.monotonic()
    msg = _fails(serve(trickle).url, monkeypatch, timeout_s=1.5)
    assert time.monotonic() - t0 < 3.5  # per-read timeouts alone would run for hours
    assert "did not answer within skd.timeout_s=1.5 s" in msg


@pytest.mark.parametrize(
    "answer,fragment",
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n\xff\xfe\xfd\xfc", "not UTF-8"),
        (b"HTPT/9 banana\r\n\r\n", "RemoteProtocolError"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n{\"choices\": [", "RemoteProtocolError"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nnot json!", "not JSON"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]", "not a JSON object"),
    ],
)
def test_malformed_answers_are_one_line(serve, monkeypatch, answer: bytes, fragment: str) -> None:
    msg = _fails(serve(lambda c, h: c.sendall(answer)).url, monkeypatch, retries=0)
    assert fragment in msg and "failed after 1 tries" in msg


def test_echoed_error_body_is_redacted(serve, monkeypatch) -> None:
    def echo(conn: socket.socket, head: bytes) -> None:
        auth = next(line for line in head.split(b"\r\n") if line.lower().startswith(b"authorization"))
        body = b"bad request, you sent " + auth + b" and " + KEY[:20].encode() + b"... " + head.replace(b"\r\n", b" | ")
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: %d\r\n\r\n" % len(body) + body)

    msg = _fails(serve(echo).url, monkeypatch)
    assert "HTTP 400" in msg and "[redacted]" in msg


def test_redact_patterns() -> None:
    assert KEY not in redact(f"Authorization: Bearer {KEY}")
    assert redact("authorization=abc123 rest") == "authorization=[redacted] rest"
    assert redact("token sk-abcdefgh1234 end") == "token sk-[redacted] end"
    assert redact("custom key zzsecretzz here", "zzsecretzz") == "custom key [redacted] here"


# ------------------------------------------------------------------ round two: the key in every form, and consent
SLASH_KEY = "sk-hostile/round+two=0123456789"


def _answer(body: bytes, status: bytes = b"200 OK") -> Callable[[socket.socket, bytes], None]:
    return lambda c, h: c.sendall(b"HTTP/1.1 " + status + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)


def _forms(key: str) -> dict[str, str]:
    import base64
    import urllib.parse

    return {"raw": key, "json-escaped": key.replace("/", "\\/"), "url-encoded": urllib.parse.quote(key, safe=""),
            "base64": base64.b64encode(key.encode()).decode()}


@pytest.mark.parametrize("form", ["raw", "json-escaped", "url-encoded", "base64"])
def test_key_in_an_error_body_is_redacted_in_every_form(serve, monkeypatch, form: str) -> None:
    monkeypatch.setenv("LSC_HOSTILE_KEY", SLASH_KEY)
    echoed = _forms(SLASH_KEY)[form]
    server = serve(_answer(b'{"error": "bad key ' + echoed.encode() + b'"}', b"400 Bad Request"))
    with pytest.raises(LscError) as info:
        _skd(server.url).rewrite("there is a dog on the grass", PAIRS)
    assert echoed not in str(info.value) and "[redacted]" in str(info.value), str(info.value)


@pytest.mark.parametrize("form", ["raw", "json-escaped", "url-encoded", "base64"])
def test_key_in_a_successful_answer_never_reaches_bob(serve, monkeypatch, form: str) -> None:
    """An endpoint answering with the key: the rewrite (printed, stored, sent to Bob as words) holds no form of it."""
    monkeypatch.setenv("LSC_HOSTILE_KEY", SLASH_KEY)
    echoed = _forms(SLASH_KEY)[form]
    content = json.dumps(f"a dog on grass {echoed}")[1:-1].replace("/", "\\/") if form == "json-escaped" else \
        f"a dog on grass {echoed}"
    body = b'{"choices": [{"message": {"content": "' + content.encode() + b'"}}]}'
    result = _skd(serve(_answer(body)).url).rewrite("there is a dog on the grass", PAIRS)
    text = json.dumps(result.to_dict())
    assert all(f not in text for f in _forms(SLASH_KEY).values()), text


def test_a_key_that_is_not_ascii_is_one_line(serve, monkeypatch) -> None:
    monkeypatch.setenv("LSC_HOSTILE_KEY", "sk-clé-0123")
    server = serve(_answer(OK_BODY))
    with pytest.raises(LscError, match=r"^\$LSC_HOSTILE_KEY holds characters an HTTP header cannot carry"):
        _skd(server.url).rewrite("there is a dog on the grass", PAIRS)
    assert server.heads == []


def test_which_variable_goes_to_which_host_is_said_once(serve, monkeypatch) -> None:
    import warnings

    from lsc.errors import LscWarning
    from lsc.language import skd

    monkeypatch.setattr(skd, "_ANNOUNCED", set())
    monkeypatch.setenv("LSC_HOSTILE_KEY", KEY)
    server = serve(_answer(OK_BODY))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            _skd(server.url).rewrite("there is a dog on the grass", PAIRS)
    said = [str(w.message) for w in caught if issubclass(w.category, LscWarning)]
    assert said == ["skd: sending the key in $LSC_HOSTILE_KEY to 127.0.0.1"]


def _file_study(tmp_path, skd_line: str, schemes: str = "[heads_skd]"):
    path = tmp_path / f"shared{len(list(tmp_path.iterdir()))}.yaml"
    path.write_text(f"backend: world\nschemes: {schemes}\nskd: {skd_line}\n")
    return path


STEALING = "{engine: openai, api_key_env: AWS_SECRET_ACCESS_KEY, base_url: 'http://anywhere/v1'}"


def test_a_study_file_cannot_choose_which_key_goes_where(tmp_path, monkeypatch) -> None:
    from lsc.config import load_config
    from lsc.errors import ConfigError

    monkeypatch.delenv("LSC_SKD_ENDPOINTS", raising=False)
    path = _file_study(tmp_path, STEALING)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == ("skd: the study file would send $AWS_SECRET_ACCESS_KEY to anywhere; confirm with "
                               "--set skd.api_key_env=AWS_SECRET_ACCESS_KEY --set skd.base_url=http://anywhere/v1 "
                               "(or list AWS_SECRET_ACCESS_KEY@anywhere in $LSC_SKD_ENDPOINTS)")
    with pytest.raises(ConfigError, match=r"--set skd.base_url=http://anywhere/v1 \("):  # half a confirmation
        load_config(path, ["skd.api_key_env=AWS_SECRET_ACCESS_KEY"])
    # only the endpoint moved: the default variable would still go to another host
    with pytest.raises(ConfigError, match=r"would send \$OPENAI_API_KEY to evil.example"):
        load_config(_file_study(tmp_path, "{engine: openai, base_url: 'https://evil.example/v1'}"))
    with pytest.raises(ConfigError, match=r"^schemes.0.skd: the study file would send \$HOME to api.openai.com"):
        load_config(_file_study(tmp_path, "{}", "[{name: heads_skd, skd: {engine: openai, api_key_env: HOME}}]"))
    # confirmed on the command line, or by the documented opt-in
    cfg = load_config(path, ["skd.api_key_env=AWS_SECRET_ACCESS_KEY", "skd.base_url=http://anywhere/v1"])
    assert cfg.skd.api_key_env == "AWS_SECRET_ACCESS_KEY"
    monkeypatch.setenv("LSC_SKD_ENDPOINTS", "OTHER@x, AWS_SECRET_ACCESS_KEY@anywhere")
    assert load_config(path).skd.base_url == "http://anywhere/v1"
    # the defaults (OPENAI_API_KEY to api.openai.com) and the offline engines need no confirmation
    monkeypatch.delenv("LSC_SKD_ENDPOINTS")
    assert load_config(_file_study(tmp_path, "{engine: openai}")).skd.engine == "openai"
    assert load_config(_file_study(tmp_path, "{engine: lexicon, api_key_env: HOME}")).skd.engine == "lexicon"
