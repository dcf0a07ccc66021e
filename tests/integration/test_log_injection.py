"""Log injection (issue 12, item 11): text a client chooses (user, database, application_name)
reaches the log escaped, so a newline in it cannot forge a log line of its own."""

from __future__ import annotations

from pathlib import Path

import pytest

import pgwire

pytestmark = [pytest.mark.targets("sluice")]

FORGED_USER = "x\nfake_line key=value"
FORGED_APP = "app\nfake_line_app key=value\r\nfake_line_cr key=value"
FORGED_DB = "nodb\nfake_line_db key=value"


def whole_log(target) -> str:
    """The pooler's whole log (PoolerProcess.log() is only its tail)."""
    return Path(target.log_file).read_text(errors="replace")


@pytest.mark.sluice_config(config={"log_level": "debug"})
def test_newlines_in_client_strings_do_not_forge_log_lines(sluice):
    # An unknown user (login_failed names it), with a forged application_name.
    error = pgwire.login_error(sluice.host, sluice.port, FORGED_USER, "app", "whatever")
    assert error.sqlstate == "28P01"
    with pgwire.WireClient(sluice.host, sluice.port) as client:
        with pytest.raises(pgwire.ServerError):
            client.startup(FORGED_USER, "app", "whatever", application_name=FORGED_APP)
    # A known user with a forged application_name (session_started, at debug) and a forged
    # database (login_failed reason=unknown_database, after authentication).
    with pgwire.connect(sluice.host, sluice.port, "alice", "app", "alice-secret",
                        application_name=FORGED_APP) as client:
        assert client.query("SELECT 1") == [["1"]]
    error = pgwire.login_error(sluice.host, sluice.port, "alice", FORGED_DB, "alice-secret")
    assert error.sqlstate == "3D000"

    log = whole_log(sluice)
    lines = log.splitlines()
    forged = [line for line in lines if line.startswith("fake_line")]
    assert not forged, f"forged log lines: {forged}"
    assert "\r" not in log
    # Each event is one line that names the value, escaped.
    assert any('login_failed reason=password' in line and
               'user="x\\nfake_line key=value"' in line for line in lines), log
    assert any("session_started" in line and "application_name=" in line and
               "app\\nfake_line_app" in line for line in lines), log
    assert any("unknown_database" in line and "nodb\\nfake_line_db" in line for line in lines), log


def logfmt_fields(line: str) -> list[tuple[str, str]]:
    """The key=value fields of a log line (after the event name); a value is bare up to the next
    space or double-quoted with backslash escapes. Words without '=' are skipped."""
    fields, i = [], 0
    while i < len(line):
        if line[i] == " ":
            i += 1
            continue
        j = i
        while j < len(line) and line[j] not in " =":
            j += 1
        if j >= len(line) or line[j] == " ":
            i = j
            continue
        key, j = line[i:j], j + 1
        if j < len(line) and line[j] == '"':
            j += 1
            value = ""
            while j < len(line) and line[j] != '"':
                if line[j] == "\\" and j + 1 < len(line):
                    j += 1
                value += line[j]
                j += 1
            j += 1
        else:
            k = j
            while k < len(line) and line[k] != " ":
                k += 1
            value, j = line[j:k], k
        fields.append((key, value))
        i = j
    return fields


def test_quotes_and_spaces_in_a_user_name_cannot_forge_fields(sluice):
    name = 'eve" reason=ok user="root'
    pgwire.login_error(sluice.host, sluice.port, name, "app", "x")
    lines = [line for line in whole_log(sluice).splitlines() if "login_failed" in line]
    assert lines
    for line in lines:
        fields = logfmt_fields(line)
        assert [v for k, v in fields if k == "reason"] == ["password"], line
        assert [v for k, v in fields if k == "user"] == [name], line
