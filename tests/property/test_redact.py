"""redact_url / redact_text: a secret in user info, a query value or a fragment never
survives, wherever the URL sits in a text."""

from __future__ import annotations

import string
from urllib.parse import quote

from hypothesis import given
from hypothesis import strategies as st

from sidecar.errors import NetworkError
from sidecar.redact import redact_text, redact_url

secrets = st.text(alphabet=string.printable.strip() + " ", min_size=6, max_size=20).map(
    lambda s: "Zq" + s
)
hosts = st.sampled_from(["example.com", "127.0.0.1:8080", "[::1]:9", "cdn.example.org"])
paths = st.lists(st.text(string.ascii_letters + string.digits + "-_.", min_size=1), max_size=3)
places = st.sets(st.sampled_from(["user", "password", "query", "fragment"]), min_size=1)
around = st.sampled_from(["{}", "GET {} failed", "'{}'", '"{}"', "({})", "<{}>", "url={} x"])


def build(secret: str, host: str, path: list[str], where: set[str]) -> str:
    coded = quote(secret, safe="")
    user = "u"
    if "user" in where:
        user = coded
    if "password" in where:
        user += ":" + coded
    userinfo = f"{user}@" if {"user", "password"} & where else ""
    url = f"https://{userinfo}{host}/" + "/".join(path)
    if "query" in where:
        url += f"?a=1&token={coded}&b="
    if "fragment" in where:
        url += f"#{coded}"
    return url


@given(secrets, hosts, paths, places, around)
def test_no_secret_survives(secret: str, host: str, path: list[str], where: set[str], text: str):
    url = build(secret, host, path, where)
    forms = {secret, quote(secret, safe=""), quote(secret)}
    for shown in (redact_url(url), redact_text(text.format(url)), NetworkError(url).message):
        for form in forms:
            assert form not in shown, (url, shown)


@given(hosts, paths)
def test_a_url_without_secrets_keeps_its_host_and_path(host: str, path: list[str]):
    url = f"https://{host}/" + "/".join(path)
    assert redact_url(url) == url
    assert redact_text(f"fetching {url} now") == f"fetching {url} now"
