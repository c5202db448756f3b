"""``childshield crawl`` and ``childshield takedown`` commands in a subprocess."""

from __future__ import annotations

import json
from pathlib import Path

from childshield.store.db import open_database
from childshield.store.models import Provider
from cli_runner import cli_for


def test_crawl_and_takedown_commands(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'cli.db'}")  # both stores are covered by the other tests
    crawl, takedown = cli_for(db, "crawl"), cli_for(db, "takedown")
    added = crawl("add", "http://a.test/x", "HTTP://A.TEST:80/x#frag", "ftp://no", "--source", "form")
    assert added.returncode == 0 and "queued 1 URLs (1 already known, 1 refused)" in added.stderr
    assert crawl("add", "javascript:alert(1)").returncode == 1
    listed = tmp_path / "urls.txt"
    listed.write_text("# reported today\nhttp://b.test/1\n\nhttp://b.test/2\n")
    assert "queued 2" in crawl("add", "--file", str(listed)).stderr
    status = json.loads(crawl("status").stdout)
    assert status["urls"] == {"queued": 3} and status["hits"] == 0
    assert crawl("hits").stdout == ""
    assert crawl("run", "--allow", "not-a-network").returncode == 2

    out = tmp_path / "notice.txt"
    assert takedown("template", "--out", str(out)).returncode == 0 and "{{ reference }}" in out.read_text()
    assert takedown("contact", "ORG-NONE", "desk@x.test").returncode == 1
    assert takedown("contact", "ORG-NONE", "not an address").returncode == 2
    with db.session() as session:
        session.add(Provider(key="ORG-X", name="X Hosting", country="FR", abuse_email="abuse@x.test"))
    assert takedown("contact", "ORG-X", "desk@x.test").returncode == 0
    providers = [json.loads(line) for line in takedown("providers").stdout.splitlines()]
    assert providers == [
        {"key": "ORG-X", "name": "X Hosting", "country": "FR", "abuse_email": "abuse@x.test",
         "contact_override": "desk@x.test", "contact": "desk@x.test"}
    ]  # fmt: skip
    rows = [json.loads(line) for line in takedown("stats", "--json", "--by", "country").stdout.splitlines()]
    assert rows[-1]["country"] == "all" and rows[-1]["media"] == 0
    assert takedown("stats", "--by", "planet").returncode == 2
    status = json.loads(takedown("status").stdout)
    assert status["items"] == {} and status["errors"] == {
        "recheck": {}, "rdap": {}, "notices_retrying": {}, "notices_failed": {}
    }  # fmt: skip
