#!/usr/bin/env python3
"""Writes the seed corpora of the libFuzzer targets under tests/fuzz/corpus/.

Small valid and invalid examples of every input the targets decode, built
from docs/protocol.md and etc/connrep.conf, so that fuzzing starts from
every message kind, every rejection reason and every admin verb instead of
from nothing. Deterministic: running it again rewrites the same files
(every file in corpus/<target>/ is replaced). Run it once after changing it
and commit the result:

    python3 tests/fuzz/make_corpus.py

Seeds are named for what they are; the fuzzer's own finds stay in the
temporary copy scripts/fuzz.sh makes and are never written back here.
"""

import json
import os
import shutil
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
OUT = os.path.join(HERE, "corpus")


def write(target, name, data):
    if isinstance(data, str):
        data = data.encode()
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---------------------------------------------------------------------------
# Feed frames (docs/protocol.md section 1)


def feed_header(count, producer=0, seq=0, magic=b"CRF1", version=1, flags=0):
    return magic + struct.pack("<HHQQI", version, flags, producer, seq, count)


def feed_event(ident, tenant=b"", verdict=0x01, recipients=1, ts=0, id_len=None, tenant_len=None):
    if isinstance(ident, str):
        ident = ident.encode()
    if isinstance(tenant, str):
        tenant = tenant.encode()
    return (
        struct.pack(
            "<QHHBB",
            ts,
            verdict,
            recipients,
            len(ident) if id_len is None else id_len,
            len(tenant) if tenant_len is None else tenant_len,
        )
        + ident
        + tenant
    )


def feed_frame(events, **kw):
    return feed_header(len(events), **kw) + b"".join(events)


def feed():
    t = "fuzz_feed"
    ev = feed_event("conn-1", "contoso")
    write(t, "ok-one-event", feed_frame([ev]))
    write(t, "ok-no-tenant", feed_frame([feed_event("c")], producer=7, seq=1))
    write(
        t,
        "ok-three-events",
        feed_frame(
            [
                feed_event("conn-a", "t1", verdict=0x01, recipients=3, ts=1714550400000),
                feed_event("conn-b", "", verdict=0x3F, recipients=65535),
                feed_event("conn-a", "t1", verdict=0x00, recipients=1),
            ],
            producer=0xFFFFFFFFFFFFFFFF,
            seq=0xFFFFFFFFFFFFFFFF,
        ),
    )
    write(t, "ok-id-255-tenant-64", feed_frame([feed_event("i" * 255, "t" * 64)]))
    write(t, "ok-binary-id", feed_frame([feed_event(bytes(range(1, 40)), b"\xff\xfe")]))
    write(t, "ok-every-verdict-bit",
          feed_frame([feed_event("v%d" % b, verdict=1 << b) for b in range(6)]))
    write(t, "ok-ts-max", feed_frame([feed_event("x", ts=0xFFFFFFFFFFFFFFFF)]))
    write(t, "ok-20-events", feed_frame([feed_event("conn-%02d" % i, "t%d" % (i % 3))
                                         for i in range(20)]))
    # Every rejection reason, in the order crp_feed_decode checks them.
    write(t, "bad-empty", b"")
    write(t, "bad-truncated-header", feed_frame([ev])[:27])
    write(t, "bad-magic", feed_frame([ev], magic=b"CRQ1"))
    write(t, "bad-version-0", feed_frame([ev], version=0))
    write(t, "bad-version-2", feed_frame([ev], version=2))
    write(t, "bad-reserved-header-flags", feed_frame([ev], flags=1))
    write(t, "bad-count-0", feed_header(0))
    write(t, "bad-count-65536", feed_header(65536) + ev)
    write(t, "bad-count-high", feed_header(0xFFFFFFFF) + ev)
    write(t, "bad-count-more-than-events", feed_header(3) + ev + ev)
    write(t, "bad-event-fixed-part-cut", feed_header(1) + ev[:13])
    write(t, "bad-reserved-verdict-bits", feed_frame([feed_event("x", verdict=0x40)]))
    write(t, "bad-recipients-0", feed_frame([feed_event("x", recipients=0)]))
    write(t, "bad-id-length-0", feed_frame([feed_event("", id_len=0)]))
    write(t, "bad-tenant-length-65", feed_frame([feed_event("x", "t" * 65)]))
    write(t, "bad-id-cut", feed_header(1) + feed_event("abcdef")[:-2])
    write(t, "bad-tenant-cut", feed_header(1) + feed_event("abc", "tenant")[:-1])
    write(t, "bad-id-length-lies", feed_frame([feed_event("abc", id_len=200)]))
    write(t, "bad-trailing-byte", feed_frame([ev]) + b"\0")
    write(t, "bad-second-event-bad", feed_header(2) + ev + feed_event("y", recipients=0))
    write(t, "bad-header-only", feed_header(1))


# ---------------------------------------------------------------------------
# Lookups (docs/protocol.md section 2)


def lookup_req(ids, request_id=1, flags=0, magic=b"CRQ1", version=1, count=None):
    body = b""
    for i in ids:
        if isinstance(i, str):
            i = i.encode()
        body += bytes([len(i)]) + i
    return magic + struct.pack("<HHIH", version, flags, request_id,
                               len(ids) if count is None else count) + body


def reply(results, status=0, request_id=1, count=None, magic=b"CRR1", version=1):
    body = b""
    for state, reasons, since, text in results:
        if isinstance(text, str):
            text = text.encode()
        body += struct.pack("<BBQH", state, reasons, since, len(text)) + text
    return magic + struct.pack("<HHIH", version, status, request_id,
                               len(results) if count is None else count) + body


SMTP = "550 5.7.711 Access denied, bad inbound connector. AS(2204)"


def lookup():
    t = "fuzz_lookup"
    write(t, "req-ok-one", lookup_req(["conn-1"]))
    write(t, "req-ok-three-text", lookup_req(["a", "conn-2", "x" * 40], request_id=0xDEADBEEF,
                                              flags=1))
    write(t, "req-ok-unknown-flags", lookup_req(["a"], flags=0xFFFF))
    write(t, "req-ok-id-255", lookup_req(["i" * 255]))
    write(t, "req-ok-binary-id", lookup_req([bytes(range(1, 30))]))
    write(t, "req-ok-64-ids", lookup_req(["id%d" % i for i in range(64)]))
    write(t, "req-bad-short", lookup_req(["a"])[:13])
    write(t, "req-bad-magic", lookup_req(["a"], magic=b"CRQ2"))
    write(t, "req-unsupported-version", lookup_req(["a"], version=2, request_id=77))
    write(t, "req-bad-count-0", lookup_req([], count=0))
    write(t, "req-bad-count-4097", lookup_req(["a"], count=4097))
    write(t, "req-bad-count-more-than-ids", lookup_req(["a", "b"], count=3))
    write(t, "req-bad-id-length-0", lookup_req([], count=1) + b"\0")
    write(t, "req-bad-id-cut", lookup_req(["abcdef"])[:-1])
    write(t, "req-bad-trailing", lookup_req(["a"]) + b"z")
    write(t, "stats", b"CRS1")
    write(t, "stats-bad-long", b"CRS1\0")
    write(t, "stats-bad-short", b"CRS")

    write(t, "rep-ok-states", reply([(0, 0, 0, ""), (1, 0, 0, ""), (2, 0x21, 1714550400000, ""),
                                     (3, 0, 0, "")]))
    write(t, "rep-ok-text", reply([(2, 0x01, 1714550400000, SMTP)], request_id=9))
    write(t, "rep-ok-odd-fields", reply([(1, 0x3F, 5, ""), (2, 0xFF, 0xFFFFFFFFFFFFFFFF, "\0x")]))
    write(t, "rep-malformed", reply([], status=1, request_id=3))
    write(t, "rep-overloaded", reply([], status=2))
    write(t, "rep-unsupported", reply([], status=3))
    write(t, "rep-bad-status-4", reply([], status=4))
    write(t, "rep-bad-status-with-results", reply([(0, 0, 0, "")], status=1))
    write(t, "rep-bad-ok-no-results", reply([]))
    write(t, "rep-bad-count-4097", reply([(0, 0, 0, "")], count=4097))
    write(t, "rep-bad-state-4", reply([(4, 0, 0, "")]))
    write(t, "rep-bad-text-not-restricted", reply([(1, 0, 0, "x")]))
    write(t, "rep-bad-text-cut", reply([(2, 1, 0, SMTP)])[:-3])
    write(t, "rep-bad-trailing", reply([(0, 0, 0, "")]) + b"\0")
    write(t, "rep-bad-version", reply([(0, 0, 0, "")], version=2))
    write(t, "rep-bad-short", reply([(0, 0, 0, "")])[:12])


# ---------------------------------------------------------------------------
# Admin requests (PROTOCOL.md section 5, docs/admin.md). Three bytes of
# set-up (caller, backend fault, flags; see fuzz_admin.c), then the body.

# Callers: identity index = role * 3 + scope (scope 0 "*", 1 "Rq7red", 2 "").
OM, SA, GR, SR, VO = range(5)
ALL, RED, NONE = range(3)
UNKNOWN, NOBODY = 15, 16


def caller(role, scope):
    return role * 3 + scope


# Backend faults: bits 0..2 the error, 3..5 the function.
E_NOTFOUND, E_CONFLICT, E_INVAL, E_TIMEOUT, E_FULL, E_IO, E_NOMEM = range(1, 8)
F_TENANT_OF, F_LIST, F_DESCRIBE, F_REMOVE, F_BLOCK, F_STATS, F_SAVE = range(1, 8)
NULL_OUT, ODD = 0x40, 0x80


def fault(err, fn):
    return err | fn << 3


# Set-up flags.
NO_BACKEND, AUDIT_OFF, NO_ALERTS = 1, 2, 4


def admin_req(who, body, flt=0, setup=0):
    if not isinstance(body, (bytes, str)):
        body = json.dumps(body, separators=(",", ":"))
    if isinstance(body, str):
        body = body.encode()
    return bytes([who, flt, setup]) + body


LONG_ID = "c-Bq7-" + "b" * 249


def admin():
    t = "fuzz_admin"
    w = lambda name, *a, **kw: write(t, name, admin_req(*a, **kw))

    for role, tag in ((OM, "om"), (SA, "sa"), (GR, "gr"), (SR, "sr"), (VO, "vo")):
        w("whoami-%s-all" % tag, caller(role, ALL), {"verb": "whoami"})
    w("whoami-om-red", caller(OM, RED), {"verb": "whoami"})
    w("whoami-sa-none", caller(SA, NONE), {"verb": "whoami"})
    w("whoami-unknown", UNKNOWN, {"verb": "whoami"})
    w("whoami-nobody", NOBODY, {"verb": "whoami"})

    w("stats-all", caller(GR, ALL), {"verb": "get-stats"})
    w("stats-red", caller(SR, RED), {"verb": "get-stats"})
    w("stats-fail", caller(OM, ALL), {"verb": "get-stats"}, fault(E_TIMEOUT, F_STATS))
    w("stats-red-list-fail", caller(SR, RED), {"verb": "get-stats"}, fault(E_IO, F_LIST))

    w("blocked-list-all", caller(VO, ALL), {"verb": "get-blocked-connector"})
    w("blocked-list-red", caller(GR, RED), {"verb": "get-blocked-connector"})
    w("blocked-list-none", caller(GR, NONE), {"verb": "get-blocked-connector"})
    w("blocked-list-odd", caller(GR, RED), {"verb": "get-blocked-connector"}, ODD)
    w("blocked-list-null", caller(GR, ALL), {"verb": "get-blocked-connector"}, NULL_OUT)
    w("blocked-one", caller(SR, ALL), {"verb": "get-blocked-connector",
                                        "connector_id": "c-Bq7-1"})
    w("blocked-one-quoted", caller(SR, RED), {"verb": "get-blocked-connector",
                                               "connector_id": "it's Rq7 \"quoted\""})
    w("blocked-one-not-restricted", caller(SR, RED), {"verb": "get-blocked-connector",
                                                       "connector_id": "c-Rq7-2"})
    w("connector-in-scope", caller(VO, RED), {"verb": "get-connector", "connector_id": "c-Rq7-3"})
    w("connector-out-of-scope", caller(VO, RED), {"verb": "get-connector",
                                                  "connector_id": "c-Bq7-1"})
    w("connector-unknown", caller(VO, ALL), {"verb": "get-connector", "connector_id": "nope"})
    w("connector-255", caller(GR, ALL), {"verb": "get-connector", "connector_id": LONG_ID})
    w("connector-256", caller(GR, ALL), {"verb": "get-connector", "connector_id": LONG_ID + "b"})
    w("connector-utf8", caller(GR, ALL),
      '{"verb":"get-connector","connector_id":"c-Bq7-\\u00e9"}')
    w("connector-long-tenant", caller(GR, ALL), {"verb": "get-connector",
                                                 "connector_id": "c-Lq7-1"})
    w("connector-odd", caller(GR, ALL), {"verb": "get-connector", "connector_id": "c-Rq7-1"}, ODD)
    w("connector-describe-fail", caller(GR, ALL), {"verb": "get-connector",
                                                   "connector_id": "c-Rq7-1"},
      fault(E_NOMEM, F_DESCRIBE) | ODD)
    w("connector-tenant-of-fail", caller(GR, RED), {"verb": "get-connector",
                                                    "connector_id": "c-Rq7-1"},
      fault(E_INVAL, F_TENANT_OF))
    w("connector-no-backend", caller(GR, ALL), {"verb": "get-connector",
                                                "connector_id": "c-Rq7-1"}, 0, NO_BACKEND)

    w("remove-om-all", caller(OM, ALL), {"verb": "remove-blocked-connector",
                                         "connector_id": "c-Bq7-1", "reason": "cleaned up"})
    w("remove-sa-red", caller(SA, RED), {"verb": "remove-blocked-connector",
                                         "connector_id": "c-Rq7-1"})
    w("remove-not-restricted", caller(SA, ALL), {"verb": "remove-blocked-connector",
                                                 "connector_id": "c-Rq7-2"})
    w("remove-gr-denied", caller(GR, ALL), {"verb": "remove-blocked-connector",
                                            "connector_id": "c-Rq7-1"})
    w("remove-out-of-scope", caller(OM, RED), {"verb": "remove-blocked-connector",
                                               "connector_id": "c-Nq7-1"})
    w("remove-fail", caller(OM, ALL), {"verb": "remove-blocked-connector",
                                       "connector_id": "c-Rq7-1"}, fault(E_FULL, F_REMOVE) | ODD)
    w("remove-audit-off", caller(OM, ALL), {"verb": "remove-blocked-connector",
                                            "connector_id": "c-Rq7-1", "reason": ""}, NULL_OUT,
      AUDIT_OFF)

    w("block-new-all", caller(OM, ALL), {"verb": "block-connector", "connector_id": "new-1",
                                         "reason": "spam", "tenant": "Rq7red"})
    w("block-new-scoped", caller(SA, RED), {"verb": "block-connector", "connector_id": "new-2",
                                            "reason": "spam"})
    w("block-scoped-other-tenant", caller(SA, RED), {"verb": "block-connector",
                                                     "connector_id": "new-3", "reason": "x",
                                                     "tenant": "Bq7blue"})
    w("block-known-tenant-mismatch", caller(OM, ALL), {"verb": "block-connector",
                                                       "connector_id": "c-Rq7-2", "reason": "x",
                                                       "tenant": "other"})
    w("block-no-reason", caller(OM, ALL), {"verb": "block-connector", "connector_id": "x"})
    w("block-tenant-64", caller(OM, ALL), {"verb": "block-connector", "connector_id": "n",
                                           "reason": "r", "tenant": "T" * 64})
    w("block-tenant-65", caller(OM, ALL), {"verb": "block-connector", "connector_id": "n",
                                           "reason": "r", "tenant": "T" * 65})
    w("block-reason-1025", caller(OM, ALL), {"verb": "block-connector", "connector_id": "n",
                                             "reason": "r" * 1025})
    w("block-vo-denied", caller(VO, NONE), {"verb": "block-connector", "connector_id": "n",
                                            "reason": "r"})
    w("block-fail", caller(OM, ALL), {"verb": "block-connector", "connector_id": "n",
                                      "reason": "r"}, fault(E_CONFLICT, F_BLOCK))

    w("policy-get", caller(SR, ALL), {"verb": "get-alert-policy"})
    w("policy-get-no-alerts", caller(SR, ALL), {"verb": "get-alert-policy"}, 0, NO_ALERTS)
    w("policy-set", caller(OM, ALL), {"verb": "set-alert-policy", "enabled": True,
                                      "email": False, "daily_limit": 2,
                                      "recipients": "a@example.com, b@example.org"})
    w("policy-set-array", caller(SA, ALL), {"verb": "set-alert-policy",
                                            "recipients": ["a@example.com", "x@y.z"]})
    w("policy-set-bad-limit", caller(OM, ALL), {"verb": "set-alert-policy", "daily_limit": 9})
    w("policy-set-bad-recipient", caller(OM, ALL), {"verb": "set-alert-policy",
                                                    "recipients": ["not an address", 5]})
    w("policy-set-scoped", caller(OM, RED), {"verb": "set-alert-policy", "enabled": False})
    w("policy-set-audit-off", caller(OM, ALL), {"verb": "set-alert-policy", "enabled": True},
      0, AUDIT_OFF)
    w("policy-set-save-fail", caller(OM, ALL), {"verb": "set-alert-policy", "email": True},
      fault(E_IO, F_SAVE))

    w("search-all", caller(GR, ALL), {"verb": "search-audit-log"})
    w("search-red", caller(SR, RED), {"verb": "search-audit-log", "limit": 2})
    w("search-filters", caller(GR, ALL), {"verb": "search-audit-log", "connector_id": "c-Bq7-1",
                                          "actor": "engine", "action": "state.*",
                                          "since": "2024-05-01T00:00:00Z", "until": "48h"})
    w("search-times", caller(GR, ALL), {"verb": "search-audit-log",
                                        "since": "2024-05-01T10:00:00.5+02:00",
                                        "until": "2024-05-01 23:59:60Z", "limit": 10000})
    w("search-bad-limit", caller(GR, ALL), {"verb": "search-audit-log", "limit": 10001})
    w("search-bad-since", caller(GR, ALL), {"verb": "search-audit-log", "since": "yesterday"})
    w("search-audit-off", caller(GR, ALL), {"verb": "search-audit-log"}, 0, AUDIT_OFF)

    w("bad-json", caller(OM, ALL), '{"verb": "whoami"')
    w("bad-not-object", caller(OM, ALL), '["whoami"]')
    w("bad-no-verb", caller(OM, ALL), '{"connector_id": "x"}')
    w("bad-verb-type", caller(OM, ALL), '{"verb": 5}')
    w("bad-unknown-verb", caller(OM, ALL), {"verb": "drop-tables" + "\u00e9" * 40})
    w("bad-unknown-argument", caller(OM, ALL), {"verb": "whoami", "x" * 70: 1})
    w("bad-duplicate-key", caller(OM, ALL), '{"verb":"whoami","verb":"get-stats"}')
    w("bad-nul-escape", caller(OM, ALL), '{"verb":"get-connector","connector_id":"a\\u0000b"}')
    w("bad-id-type", caller(OM, ALL), {"verb": "get-connector", "connector_id": ["x"]})
    w("bad-empty-id", caller(OM, ALL), {"verb": "get-connector", "connector_id": ""})
    w("bad-invalid-utf8", caller(OM, ALL), b'{"verb":"get-connector","connector_id":"\xff\xfe"}')
    w("bad-empty-body", caller(OM, ALL), b"")


# ---------------------------------------------------------------------------
# Config files (PROTOCOL.md section 6, etc/connrep.conf)

KEY1 = "Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID"
KEY2 = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"


def config():
    t = "fuzz_config"
    with open(os.path.join(ROOT, "etc", "connrep.conf"), "rb") as f:
        write(t, "ok-etc-connrep.conf", f.read())
    write(t, "ok-empty", "")
    write(t, "ok-comments-only", "; nothing\n# still nothing\n\n")
    write(t, "ok-every-key",
          "[engine]\nmax_connectors = 64\nshm_name =\nstate_dir = /var/lib/x\nshards = 64\n"
          "[feed]\nbind = tcp://*:5555, ipc:///tmp/f\nconnect = tcp://h:1\n"
          "max_frame_bytes = 256MiB\n"
          "[lookup]\nbind =\n[events]\nbind = inproc://ev\n"
          "[admin]\nbind = tcp://127.0.0.1:9\nsecret_key_file = k;glued\n"
          "[scoring]\nhalf_life = 1.5h\nmin_messages = 0\nspam_ratio = 1\nphish_ratio = 0.001\n"
          "high_confidence_phish = 0.5\nmalware = 100\nrecipients_per_hour = 9007199254740992\n"
          "recipients_per_day = 9007199254740992\naction = restrict_today\n"
          "auto_release_after = 7d\nprobation = 0\nprobation_factor = 0.25\n"
          "[alerts]\nenabled = YES\nemail = off\nrecipients = a@b.c ,d@e.f\ndaily_limit = 1\n"
          "notify_command = /bin/echo \"$CONNECTOR\" | mail -s x root\n"
          "[audit]\nenabled = On\n")
    write(t, "ok-identities",
          "[identity alice]\npublic_key = %s\nrole = OrganizationManagement\ntenant = *\n"
          "email = alice@example.com\n\n"
          "[identity bob.b-c_d@e+f]\npublic_key = %s\nrole = ViewOnlyOrganizationManagement\n"
          "tenant = contoso\n\n[identity empty-tenant]\npublic_key = %s\n"
          "role = SecurityReader\ntenant =\n" % (KEY1, KEY2, KEY1))
    write(t, "ok-bom-crlf-indent", "\ufeff[scoring]\r\n   half_life = 30m ; inline\r\n"
          "\tmalware = 3\r\n")
    write(t, "ok-durations", "[scoring]\nhalf_life = 1500ms\nprobation = 0.5s\n"
          "auto_release_after = 0.000000001d\n")
    write(t, "ok-audit-off", "[alerts]\nenabled = false\n[audit]\nenabled = 0\n")
    write(t, "ok-notify-semicolon", "[alerts]\nnotify_command = a;b ;comment\n")
    write(t, "bad-unknown-section", "[nope]\nkey = value\n")
    write(t, "bad-unknown-key", "[engine]\nmax_connector = 64\n")
    write(t, "bad-outside-section", "max_connectors = 64\n")
    write(t, "bad-twice", "[engine]\nshards = 1\nshards = 2\n")
    write(t, "bad-pow2", "[engine]\nmax_connectors = 100\n")
    write(t, "bad-range", "[engine]\nshards = 128\n")
    write(t, "bad-uint-overflow", "[scoring]\nrecipients_per_hour = 99999999999999999999999\n")
    write(t, "bad-number-sign", "[scoring]\nspam_ratio = -0.5\n")
    write(t, "bad-ratio-0", "[scoring]\nphish_ratio = 0\n")
    write(t, "bad-duration-bare", "[scoring]\nhalf_life = 10\n")
    write(t, "bad-duration-frac", "[scoring]\nhalf_life = 1.0001ms\n")
    write(t, "bad-size-unit", "[feed]\nmax_frame_bytes = 4MB\n")
    write(t, "bad-bool", "[audit]\nenabled = maybe\n")
    write(t, "bad-action", "[scoring]\naction = block\n")
    write(t, "bad-endpoint", "[feed]\nbind = tcp://a, ,tcp://b\n")
    write(t, "bad-shm", "[engine]\nshm_name = /a/b\n")
    write(t, "bad-recipient", "[alerts]\nrecipients = nobody\n")
    write(t, "bad-alerts-without-audit", "[audit]\nenabled = false\n")
    write(t, "bad-day-below-hour", "[scoring]\nrecipients_per_hour = 10\nrecipients_per_day = 9\n")
    write(t, "bad-identity-empty", "[identity ghost]\n")
    write(t, "bad-identity-name", "[identity bad name!]\npublic_key = %s\nrole = GlobalReader\n"
          % KEY1)
    write(t, "bad-identity-duplicate",
          ("[identity a]\npublic_key = %s\nrole = GlobalReader\n" % KEY1) * 2)
    write(t, "bad-identity-key", "[identity a]\npublic_key = %s\nrole = GlobalReader\n"
          % ("~" + KEY1[1:]))
    write(t, "bad-identity-key-overflow", "[identity a]\npublic_key = %s\nrole = GlobalReader\n"
          % ("#" * 40))
    write(t, "bad-identity-role", "[identity a]\npublic_key = %s\nrole = Root\n" % KEY1)
    write(t, "bad-identity-tenant-65", "[identity a]\npublic_key = %s\nrole = GlobalReader\n"
          "tenant = %s\n" % (KEY1, "t" * 65))
    write(t, "bad-syntax", "[engine\nshards\n")
    write(t, "bad-text-after-header", "[engine] x\n")
    write(t, "bad-nul-byte", "[engine]\nshards = 1\0\n")
    write(t, "bad-control-char", "[engine]\nstate_dir = a\x01b\n")
    write(t, "bad-long-line", "[engine]\nstate_dir = " + "d" * 16400 + "\n")
    write(t, "bad-lone-cr", "[engine]\rshards = 1\n")


def main():
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    feed()
    lookup()
    admin()
    config()
    total = 0
    for target in sorted(os.listdir(OUT)):
        n = len(os.listdir(os.path.join(OUT, target)))
        total += n
        print("%-12s %3d seeds" % (target, n))
    print("%-12s %3d seeds" % ("total", total))
    if total >= 200:
        sys.exit("make_corpus.py: keep the corpus under 200 files")


if __name__ == "__main__":
    main()
