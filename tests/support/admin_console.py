"""A raw simple-query client for Sluice's admin console that keeps column names and types."""

from __future__ import annotations

import struct

import pgcluster
import pgwire

ADMIN_PASSWORD = "admin-secret"
STATS_PASSWORD = "stats-secret"
USERS = {**pgcluster.default_users(), "sluice_admin": ADMIN_PASSWORD,
         "sluice_stats": STATS_PASSWORD}


class Admin:
    """A raw simple-query connection to the console that keeps column names and types."""

    def __init__(self, sluice, user="sluice_admin", password=ADMIN_PASSWORD):
        self.client = pgwire.connect("127.0.0.1", sluice.port, user, "sluice", password)

    def query(self, sql):
        self.client.send(pgwire.message(b"Q", sql.encode() + b"\0"))
        cols, rows, error, tags = [], [], None, []
        while True:
            try:
                kind, body = self.client.expect(b"T", b"D", b"C", b"I", b"N", b"Z")
            except pgwire.ServerError as e:
                error = e
                continue
            if kind == b"T":
                cols, rows = parse_row_description(body), []
            elif kind == b"D":
                rows.append(pgwire._data_row(body))
            elif kind == b"C":
                tags.append(body.rstrip(b"\0").decode())
            elif kind == b"Z":
                if error:
                    raise error
                return cols, rows, tags

    def table(self, sql):
        """Rows as dicts keyed by column name."""
        cols, rows, _ = self.query(sql)
        names = [c[0] for c in cols]
        return [dict(zip(names, r)) for r in rows]

    def close(self):
        self.client.close()


def parse_row_description(body):
    (n,) = struct.unpack("!H", body[:2])
    pos, cols = 2, []
    for _ in range(n):
        end = body.index(b"\0", pos)
        name = body[pos:end].decode()
        pos = end + 1
        _table, _attr, oid, _size, _mod, _fmt = struct.unpack("!IhIhih", body[pos:pos + 18])
        pos += 18
        cols.append((name, oid))
    return cols
