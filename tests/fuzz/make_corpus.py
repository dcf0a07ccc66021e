#!/usr/bin/python3
"""Writes the seed corpora of the protocol fuzz targets (tests/fuzz/corpus/<target>/).

Each seed is a small, realistic byte stream built from the layouts in the PostgreSQL protocol
docs ("Message Formats"), plus a few deliberately malformed ones. Run from anywhere; the output
is deterministic and checked in. Files found by fuzzing are added next to these by hand.
"""

import pathlib
import struct

HERE = pathlib.Path(__file__).resolve().parent
CORPUS = HERE / "corpus"


def u16(v):
    return struct.pack(">H", v)


def i16(v):
    return struct.pack(">h", v)


def u32(v):
    return struct.pack(">I", v)


def i32(v):
    return struct.pack(">i", v)


def cstr(s):
    return s.encode() + b"\0"


def msg(t, body=b""):
    return t.encode() + u32(len(body) + 4) + body


def packet(body):
    return u32(len(body) + 4) + body


PROTOCOL_3_0 = 196608
CANCEL, SSL, GSSENC = 80877102, 80877103, 80877104

# ---- startup phase ----
def startup(params, version=PROTOCOL_3_0):
    body = u32(version)
    for name, value in params:
        body += cstr(name) + cstr(value)
    return packet(body + b"\0")


STARTUP = {
    "startup_user_database": startup([("user", "app"), ("database", "shop"),
                                      ("application_name", "psql"),
                                      ("client_encoding", "UTF8")]),
    "ssl_then_startup": packet(u32(SSL)) + startup([("user", "app")]),
    "gssenc_then_startup": packet(u32(GSSENC)) + startup([("user", "app"),
                                                          ("database", "app")]),
    "cancel_request": packet(u32(CANCEL) + u32(4242) + u32(0xCAFEBABE)),
    "protocol_3_1": startup([("user", "app"), ("_pq_.test", "on")], version=0x00030001),
    "protocol_2_rejected": startup([("user", "app")], version=0x00020000),
    "odd_parameter_list": packet(u32(PROTOCOL_3_0) + cstr("user") + cstr("a") + cstr("database")
                                 + b"\0"),
    "missing_terminator": packet(u32(PROTOCOL_3_0) + cstr("user") + cstr("a")),
    "length_over_cap": u32(10001) + u32(PROTOCOL_3_0),
    "cancel_bad_length": packet(u32(CANCEL) + u32(1)),
    "unknown_request_code": packet(u32((1234 << 16) | 5681)),
}

# ---- client -> server ----
FRONTEND = {
    "simple_query": msg("Q", cstr("SELECT 1")) + msg("Q", cstr("")),
    "extended_pipeline": (
        msg("P", cstr("s1") + cstr("SELECT $1::int + $2") + u16(2) + u32(23) + u32(23))
        + msg("B", cstr("") + cstr("s1") + u16(1) + u16(0) + u16(2) + i32(1) + b"1" + i32(-1)
              + u16(1) + u16(0))
        + msg("D", b"P" + cstr(""))
        + msg("E", cstr("") + u32(0))
        + msg("S")),
    "close_flush_terminate": msg("C", b"S" + cstr("s1")) + msg("H") + msg("S") + msg("X"),
    "scram_client": (
        msg("p", cstr("SCRAM-SHA-256") + i32(32) + b"n,,n=,r=rOprNGfwEbeRWgbNEkqO0000")
        + msg("p", b"c=biws,r=rOprNGfwEbeRWgbNEkqO0000,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")),
    "md5_password": msg("p", cstr("md5" + "0" * 32)),
    "copy_in": (msg("Q", cstr("COPY t FROM STDIN")) + msg("d", b"1\tone\n")
                + msg("d", b"2\ttwo\n") + msg("c")),
    "copy_fail": msg("f", cstr("client aborted")),
    "function_call": msg("F", u32(1598) + u16(0) + u16(0) + u16(0)),
    "bogus_sasl_inner_length": msg("p", cstr("SCRAM-SHA-256") + i32(0x7FFFFFF0) + b"n,,"),
    "bind_value_past_end": msg("B", cstr("") + cstr("") + u16(0) + u16(1) + i32(100) + b"x"
                               + u16(0)),
    "length_below_four": b"Q" + u32(3) + b"\0",
    "unknown_type": b"Z" + u32(5) + b"I",
    "truncated_query": b"Q" + u32(100) + b"SELECT",
    "sync_too_long": b"S" + u32(5) + b"\0",
}

# ---- server -> client ----
def auth(code, data=b""):
    return msg("R", u32(code) + data)


def param_status(name, value):
    return msg("S", cstr(name) + cstr(value))


def error(fields, t="E"):
    body = b"".join(code.encode() + cstr(value) for code, value in fields) + b"\0"
    return msg(t, body)


def row_description(columns):
    body = u16(len(columns))
    for name, oid, size in columns:
        body += cstr(name) + u32(0) + u16(0) + u32(oid) + i16(size) + i32(-1) + u16(0)
    return msg("T", body)


def data_row(values):
    body = u16(len(values))
    for v in values:
        body += i32(-1) if v is None else i32(len(v)) + v.encode()
    return msg("D", body)


READY_IDLE = msg("Z", b"I")

BACKEND = {
    "auth_ok_session_start": (
        auth(0) + param_status("server_version", "15.8") + param_status("client_encoding", "UTF8")
        + param_status("TimeZone", "UTC") + msg("K", u32(4242) + u32(0xCAFEBABE)) + READY_IDLE),
    "scram_exchange": (
        auth(10, cstr("SCRAM-SHA-256-PLUS") + cstr("SCRAM-SHA-256") + b"\0")
        + auth(11, b"r=rOprNGfwEbeRWgbNEkqO0000%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")
        + auth(12, b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=") + auth(0)),
    "md5_request": auth(5, b"\x01\x02\x03\x04"),
    "cleartext_request": auth(3),
    "select_result": (
        row_description([("id", 23, 4), ("name", 25, -1)]) + data_row(["1", "one"])
        + data_row(["2", None]) + msg("C", cstr("SELECT 2")) + READY_IDLE),
    "extended_result": (
        msg("1") + msg("2") + row_description([("?column?", 23, 4)]) + data_row(["3"])
        + msg("C", cstr("SELECT 1")) + msg("Z", b"T")),
    "error_response": (
        error([("S", "ERROR"), ("V", "ERROR"), ("C", "42P01"),
               ("M", 'relation "missing" does not exist'), ("P", "15"),
               ("F", "parse_relation.c"), ("L", "1392"), ("R", "parserOpenTable")])
        + msg("Z", b"E")),
    "sluice_refusal": error([("S", "FATAL"), ("V", "FATAL"), ("C", "53300"),
                             ("M", "too many clients waiting"), ("H", "retry later")]),
    "notice_notify_empty": (
        error([("S", "NOTICE"), ("V", "NOTICE"), ("C", "00000"), ("M", "hello")], t="N")
        + msg("A", u32(4242) + cstr("jobs") + cstr("42")) + msg("I") + msg("n") + msg("3")
        + msg("s") + READY_IDLE),
    "copy_out": msg("H", b"\0" + u16(1) + u16(0)) + msg("d", b"1\n") + msg("c")
                + msg("C", cstr("COPY 1")),
    "negotiate_protocol_version": msg("v", u32(0) + u32(1) + cstr("_pq_.test")),
    "parameter_description": msg("t", u16(2) + u32(23) + u32(25)),
    "ready_bad_status": msg("Z", b"X"),
    "ready_too_long": b"Z" + u32(6) + b"II",
    "auth_unknown_code": auth(99),
    "error_unterminated": msg("E", b"SERROR\0"),
    "key_data_short": b"K" + u32(8) + u32(1),
}


# ---- SQL for inspect_session_use and the settings tracker (session_features_fuzz) ----
# After the SQL, lines "e name=value" (expected), "r ..." (read-back rows), "a ..." (applied),
# "b ..." (the backend's current values) feed merge_session_settings and plan_settings_sync.
SESSION_FEATURES = {
    "plain_select": b"SELECT * FROM t WHERE a = 'LISTEN' -- PREPARE\n",
    "listen_and_set": b"LISTEN jobs; SET search_path = tenant_7, public; SET LOCAL x.y = 1",
    "custom_names": b"SELECT set_config('myapp.tenant', '7', false), current_setting(\"App.User\")",
    "dollar_quotes": b"DO $fn$ BEGIN PERFORM pg_advisory_lock(1); END $fn$; DECLARE c CURSOR WITH HOLD FOR SELECT 1",
    "discard_deallocate": b"/* a */ DISCARD ALL; DEALLOCATE PREPARE ALL; EXECUTE sluice_abc; CREATE TEMP TABLE t()",
    "role_and_reset": b"SET SESSION AUTHORIZATION x; RESET ALL; SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
    "settings_lists": (b"SET statement_timeout = 5\n"
                       b"e application_name=app\ne TimeZone=UTC\ne search_path=public\n"
                       b"r search_path=tenant_7, public\nr statement_timeout=5000\n"
                       b"r transaction_isolation=serializable\nr TimeZone=Europe/Paris\n"
                       b"a work_mem=64MB\na statement_timeout=1000\n"
                       b"b statement_timeout=1000\nb search_path=public\nb it's=a \\ quote\n"),
    "unterminated": b"SELECT 'abc; LISTEN x; E'\\' ; $$ PREPARE",
}

# ---- client messages for StatementMapper (statement_mapper_fuzz) ----
# Header: max statements % 5, max bytes / 2, cache capacity % 5; then operations, one byte each
# (% 14) with their arguments: 0 Parse(name, query, types), 1 Bind(name, params), 2 Describe,
# 3 Close (kind, name), 4 Query(query), 5 Sync, 6 Execute, 7 Flush, 8 deliver n answers,
# 9 fail next, 10 raw(type, n, bytes), 11 define(name, query, types), 12 Bind prefix(name,
# params, keep), 13 deliver all. Names index ["", a, b, A, sluice_a, sluice_noop,
# sluice_refusal]; queries index a fixed list, or >= 0xe0 takes (b & 0x1f) bytes of the input.
def ops(*parts):
    return bytes(parts)


STATEMENT_MAPPER = {
    "parse_bind_sync": ops(0, 0, 0, 0, 1, 0, 0, 1, 1, 0, 6, 5, 13),
    "limits_two_statements": ops(2, 20, 2, 0, 1, 0, 0, 0, 2, 1, 0, 0, 3, 0, 0, 5, 13, 3, 1, 1, 5, 13),
    "eviction_and_reprepare": ops(0, 0, 1, 0, 1, 0, 0, 0, 2, 1, 0, 1, 1, 0, 5, 13, 1, 2, 0, 5, 13),
    "deallocate_query": ops(0, 0, 0, 0, 1, 0, 0, 5, 13, 4, 3, 13, 4, 5, 13, 0, 1, 1, 0, 5),
    "error_mid_pipeline": ops(0, 0, 0, 0, 1, 0, 0, 9, 0, 2, 1, 0, 1, 1, 0, 3, 1, 1, 5, 8, 2, 8, 7),
    "reserved_names": ops(0, 0, 0, 1, 4, 0, 2, 1, 4, 1, 5, 0, 4, 9, 0, 5, 6, 0, 5, 13),
    "define_then_bind_prefix": ops(0, 0, 3, 11, 1, 0, 0, 5, 13, 12, 1, 2, 9, 5, 13),
    "raw_messages": ops(0, 0, 0, 10, 0, 6) + b"x\0y\0\0\0" + ops(10, 1, 3) + b"\0a\0" + ops(5, 13),
    "query_text": ops(0, 0, 0, 0, 1, 0xe0 | 17) + b"DEALLOCATE \"a\"; x" + ops(0, 4, 0xe0 | 8) + b"SELECT 9" + ops(0, 5, 13),
}

# ---- SCRAM client messages (scram_messages_fuzz): client-first, newline, client-final ----
RFC_NONCE = "rOprNGfwEbeRWgbNEkqO"
RFC_COMBINED = RFC_NONCE + "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
SCRAM = {
    "rfc7677_exchange": ("n,,n=user,r=" + RFC_NONCE + "\nc=biws,r=" + RFC_COMBINED
                         + ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=").encode(),
    "wrong_proof": ("n,,n=,r=" + RFC_NONCE + "\nc=biws,r=" + RFC_COMBINED
                    + ",p=qvT2SWdEH5Q06albL+hjSYuUhCG7VndFyzIb7CK4n9k=").encode(),
    "y_flag_extension": ("y,,n=u,r=abc,x=ext\nc=eSws,r=abc%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                         "e=1,p=AAAA").encode(),
    "channel_binding": b"p=tls-server-end-point,,n=,r=abc\nc=biws,r=abc,p=",
    "nonce_mismatch": ("n,,n=,r=" + RFC_NONCE + "\nc=biws,r=" + RFC_NONCE
                       + ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=").encode(),
    "verifier": (b"SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
                 b"wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="),
    "authzid_and_mext": b"n,a=admin,n=,r=abc\nm=x,n=,r=abc",
}


def write(target, seeds):
    out = CORPUS / target
    out.mkdir(parents=True, exist_ok=True)
    for name, data in sorted(seeds.items()):
        (out / name).write_bytes(data)


def main():
    write("startup_fuzz", STARTUP)
    write("frontend_stream_fuzz", FRONTEND)
    write("backend_stream_fuzz", BACKEND)
    write("session_features_fuzz", SESSION_FEATURES)
    write("statement_mapper_fuzz", STATEMENT_MAPPER)
    write("scram_messages_fuzz", SCRAM)


if __name__ == "__main__":
    main()
