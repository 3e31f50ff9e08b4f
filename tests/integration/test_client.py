#!/usr/bin/env python3
"""An independent connrep client, written from docs/protocol.md only.

It uses no project code: every byte of the feed frames and lookup requests is
built here with struct.pack from the tables of docs/protocol.md (sections 1
and 2), and every reply is validated as section 7 tells a client in another
language to do. If the engine and this file disagree, one of them does not
follow docs/protocol.md.

Two ways to run it:

  test_client.py --daemon PATH/connrepd
      Starts that daemon in the foreground on ipc:// endpoints in a fresh
      temporary directory (with a config file written there; shared memory
      off), runs the tests, and always stops it (SIGTERM, then SIGKILL) and
      removes the directory. This is how CTest runs it (test_client_py).

  CONNREP_FEED=ipc://... CONNREP_LOOKUP=ipc://... test_client.py
      Tests an engine that is already running. Its [scoring] malware
      threshold must be at most 3 (the default is 3).

Needs python3 and Debian's python3-zmq. Exit status 0 when every test passes.
"""

import argparse
import ctypes
import json
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import unittest

try:
    import zmq
except ImportError:  # pragma: no cover - environment problem, say so plainly
    sys.stderr.write("test_client.py needs python3-zmq (apt-get install python3-zmq)\n")
    sys.exit(1)

# ---------------------------------------------------------------------------
# docs/protocol.md section 1: feed frames
# ---------------------------------------------------------------------------

FEED_HEADER = struct.Struct("<4sHHQQI")  # magic, version, flags, producer, sequence, count
FEED_EVENT = struct.Struct("<QHHBB")  # timestamp ms, verdict bits, recipients, id len, tenant len

SPAM, HC_SPAM, PHISH, HC_PHISH, MALWARE, BULK = (1 << b for b in range(6))


def feed_frame(producer, seq, events):
    """events: (timestamp_ms, verdict, recipients, id bytes, tenant bytes) tuples."""
    body = b"".join(
        FEED_EVENT.pack(ts, verdict, rcpt, len(cid), len(tenant)) + cid + tenant
        for ts, verdict, rcpt, cid, tenant in events
    )
    return FEED_HEADER.pack(b"CRF1", 1, 0, producer, seq, len(events)) + body


# ---------------------------------------------------------------------------
# docs/protocol.md section 2: lookups
# ---------------------------------------------------------------------------

LOOKUP_HEADER = struct.Struct("<4sHHIH")  # magic, version, flags, request id, count
REPLY_HEADER = struct.Struct("<4sHHIH")  # magic, version, status, request id, count
RESULT_FIXED = struct.Struct("<BBQH")  # state, reasons, since ms, text length

FLAG_TEXT = 0x0001
SMTP_TEXT = b"550 5.7.711 Access denied, bad inbound connector. AS(2204)"
REASON_MALWARE = 0x08

STATS_KEYS = [
    "events_applied", "frames_applied", "frames_rejected", "seq_gap", "seq_repeat",
    "lookups", "restrictions", "unblocks", "connectors", "capacity", "evictions", "uptime_s",
]
REJECT_REASONS = [
    "bad_magic", "bad_version", "truncated", "trailing_bytes", "bad_count", "bad_id_length",
    "bad_tenant_length", "bad_recipients", "reserved_bits", "oversize",
]


def lookup_request(request_id, ids, flags=FLAG_TEXT, version=1):
    body = b"".join(struct.pack("<B", len(i)) + i for i in ids)
    return LOOKUP_HEADER.pack(b"CRQ1", version, flags, request_id, len(ids)) + body


class MalformedReply(Exception):
    pass


def parse_reply(frame, request_id=None, count=None):
    """Validates a reply as docs/protocol.md section 7 asks; returns
    (status, request_id, [(state, reasons, since_ms, text), ...])."""
    if len(frame) < REPLY_HEADER.size:
        raise MalformedReply("short reply")
    magic, version, status, rid, n = REPLY_HEADER.unpack_from(frame, 0)
    if magic != b"CRR1" or version != 1 or status > 3:
        raise MalformedReply("bad header %r" % (frame[:14],))
    if status != 0 and n != 0:
        raise MalformedReply("count %d with status %d" % (n, status))
    if request_id is not None and rid != request_id:
        raise MalformedReply("request id %d, sent %d" % (rid, request_id))
    if status == 0 and count is not None and n != count:
        raise MalformedReply("count %d, sent %d ids" % (n, count))
    off, results = REPLY_HEADER.size, []
    for _ in range(n):
        if off + RESULT_FIXED.size > len(frame):
            raise MalformedReply("result cut short")
        state, reasons, since, tlen = RESULT_FIXED.unpack_from(frame, off)
        off += RESULT_FIXED.size
        if state > 3 or (tlen and state != 2) or off + tlen > len(frame):
            raise MalformedReply("bad result at %d" % off)
        results.append((state, reasons, since, frame[off:off + tlen]))
        off += tlen
    if off != len(frame):
        raise MalformedReply("%d trailing bytes" % (len(frame) - off))
    return status, rid, results


# ---------------------------------------------------------------------------
# Running the daemon (test infrastructure, not protocol)
# ---------------------------------------------------------------------------

def _die_with_parent():
    """Runs in the child before exec: SIGTERM it if this test process dies,
    so a crashed test leaves no daemon behind (Linux prctl PR_SET_PDEATHSIG)."""
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)
    except Exception:
        pass


class Daemon:
    def __init__(self, path):
        self.dir = tempfile.mkdtemp(prefix="connrep-py-")
        self.feed = "ipc://%s/feed" % self.dir
        self.lookup = "ipc://%s/lookup" % self.dir
        events = "ipc://%s/events" % self.dir
        state = os.path.join(self.dir, "state")
        os.mkdir(state)
        self.config = os.path.join(self.dir, "connrep.conf")
        with open(self.config, "w") as f:
            f.write(
                "[engine]\nmax_connectors = 4096\nshm_name =\nstate_dir = %s\n"
                "[feed]\nbind = %s\n[lookup]\nbind = %s\n[events]\nbind = %s\n"
                "[admin]\nbind =\nsecret_key_file = %s/admin.key\n"
                "[scoring]\nmalware = 3\n" % (state, self.feed, self.lookup, events, state)
            )
        self.log = open(os.path.join(self.dir, "connrepd.log"), "w+")
        self.proc = subprocess.Popen(
            [path, "--config", self.config, "--foreground"],
            stdout=self.log, stderr=self.log, preexec_fn=_die_with_parent,
        )

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        status = self.proc.returncode
        self.log.seek(0)
        text = self.log.read()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)
        return status, text


# ---------------------------------------------------------------------------
# The tests
# ---------------------------------------------------------------------------

FEED_EP = None
LOOKUP_EP = None
CTX = None


def req_socket(kind=zmq.REQ):
    s = CTX.socket(kind)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.RCVTIMEO, 5000)
    s.setsockopt(zmq.SNDTIMEO, 5000)
    s.connect(LOOKUP_EP)
    return s


def stats():
    s = req_socket()
    try:
        s.send(b"CRS1")
        frame = s.recv()
    finally:
        s.close()
    assert frame[:4] == b"CRS1", frame[:16]
    return json.loads(frame[4:].decode("utf-8"))


def wait_ready(alive, deadline_s=15.0):
    """The engine is ready when a stats request is answered."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end and alive():
        s = CTX.socket(zmq.REQ)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.RCVTIMEO, 200)
        s.connect(LOOKUP_EP)
        try:
            s.send(b"CRS1")
            if s.recv()[:4] == b"CRS1":
                return True
        except zmq.Again:
            pass
        finally:
            s.close()
    return False


def lookup(ids, flags=FLAG_TEXT, sock=None):
    rid = random.randrange(1, 1 << 32)
    s = sock or req_socket()
    try:
        s.send(lookup_request(rid, ids, flags))
        frames = s.recv_multipart()
    finally:
        if sock is None:
            s.close()
    status, _, results = parse_reply(frames[-1], rid, len(ids))
    assert status == 0, status
    return results


def wait_state(cid, state, deadline_s=10.0):
    """The feed is applied asynchronously: poll the lookup with a deadline."""
    end = time.monotonic() + deadline_s
    s = req_socket()
    try:
        while True:
            r = lookup([cid], sock=s)[0]
            if r[0] == state or time.monotonic() > end:
                return r
            time.sleep(0.005)
    finally:
        s.close()


def push(frame):
    p = CTX.socket(zmq.PUSH)
    p.setsockopt(zmq.LINGER, 5000)
    p.connect(FEED_EP)
    p.send(frame)
    p.close()  # lingers until the frame is delivered


class Protocol(unittest.TestCase):
    def test_examples_of_the_spec(self):
        # docs/protocol.md 1.5 and 2.5, byte for byte.
        frame = feed_frame(0x0102030405060708, 2, [(1700000000000, 0x0011, 0x1234, b"ab", b"t")])
        self.assertEqual(frame, bytes.fromhex(
            "43 52 46 31 01 00 00 00 08 07 06 05 04 03 02 01"
            "02 00 00 00 00 00 00 00 01 00 00 00 00 68 e5 cf"
            "8b 01 00 00 11 00 34 12 02 01 61 62 74"))
        req = lookup_request(0x01020304, [b"ab", b"c"], FLAG_TEXT)
        self.assertEqual(req, bytes.fromhex(
            "43 52 51 31 01 00 01 00 04 03 02 01 02 00 02 61"
            "62 01 63"))
        # The example reply parses as the section says.
        reply = bytes.fromhex(
            "43 52 52 31 01 00 00 00 04 03 02 01 02 00 02 09"
            "00 68 e5 cf 8b 01 00 00 3a 00") + SMTP_TEXT + bytes(12)
        self.assertEqual(len(reply), 96)
        self.assertEqual(parse_reply(reply, 0x01020304, 2),
                         (0, 0x01020304, [(2, 0x09, 1700000000000, SMTP_TEXT), (0, 0, 0, b"")]))

    def test_stats_keys(self):
        st = stats()
        for k in STATS_KEYS:
            self.assertIn(k, st)
        for r in REJECT_REASONS:
            self.assertIn(r, st["frames_rejected"])

    def test_restriction_and_clean(self):
        tag = "%d-%d" % (os.getpid(), random.randrange(1 << 30))
        bad = ("py-bad-" + tag).encode()
        clean = ("py-clean-" + tag).encode()
        before = stats()
        t0 = int(time.time() * 1000)
        events = [(t0, MALWARE, 1, bad, b"tenant-py")] * 3 + [(t0, 0, 2, clean, b"")] * 30
        push(feed_frame(random.randrange(1, 1 << 63), 1, events))

        state, reasons, since, text = wait_state(bad, 2)
        t1 = int(time.time() * 1000)
        self.assertEqual(state, 2)
        self.assertTrue(reasons & REASON_MALWARE, reasons)
        self.assertEqual(reasons & 0xC0, 0)
        self.assertTrue(t0 - 1000 <= since <= t1 + 1000, (t0, since, t1))
        self.assertEqual(text, SMTP_TEXT)

        st = stats()
        self.assertGreaterEqual(st["events_applied"], before["events_applied"] + 33)
        self.assertGreaterEqual(st["restrictions"], before["restrictions"] + 1)

        # The clean connector is allowed; a repeated id gets its own result;
        # without flag bit 0 there is no text; a DEALER without delimiter.
        d = req_socket(zmq.DEALER)
        try:
            res = lookup([clean, bad, b"py-never-seen", bad], flags=0, sock=d)
        finally:
            d.close()
        self.assertEqual(res[0], (1, 0, 0, b""))
        self.assertEqual(res[1][:3], (2, reasons, since))
        self.assertEqual(res[1][3], b"")
        self.assertEqual(res[2], (0, 0, 0, b""))
        self.assertEqual(res[3], res[1])

    def test_batch_and_dealer_with_delimiter(self):
        ids = [("py-batch-%d" % i).encode() for i in range(1000)]
        rid = 4242
        d = req_socket(zmq.DEALER)
        try:
            d.send_multipart([b"", lookup_request(rid, ids)])
            frames = d.recv_multipart()
        finally:
            d.close()
        self.assertEqual(len(frames), 2)
        self.assertEqual(frames[0], b"")
        status, _, res = parse_reply(frames[1], rid, len(ids))
        self.assertEqual(status, 0)
        self.assertEqual(len(res), 1000)

    def test_bad_requests(self):
        s = req_socket()
        try:
            s.send(b"CRQ1")  # too short for a header
            self.assertEqual(parse_reply(s.recv())[:2], (1, 0))
            s.send(lookup_request(77, [b"x"], version=2))
            self.assertEqual(parse_reply(s.recv(), 77)[:2], (3, 77))
            s.send(lookup_request(78, [b"x"]) + b"junk")  # bytes after the last id
            self.assertEqual(parse_reply(s.recv(), 78)[:2], (1, 78))
        finally:
            s.close()

    def test_rejected_feed_frame_is_counted(self):
        before = stats()["frames_rejected"]["bad_magic"]
        push(b"XXXX" + feed_frame(0, 0, [(0, 0, 1, b"py-x", b"")])[4:])
        end = time.monotonic() + 10
        while stats()["frames_rejected"]["bad_magic"] < before + 1 and time.monotonic() < end:
            time.sleep(0.005)
        self.assertEqual(stats()["frames_rejected"]["bad_magic"], before + 1)


def main():
    global FEED_EP, LOOKUP_EP, CTX
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--daemon", help="connrepd to start (else CONNREP_FEED/CONNREP_LOOKUP)")
    args, rest = ap.parse_known_args()
    CTX = zmq.Context()
    daemon = None
    if args.daemon:
        daemon = Daemon(args.daemon)
        FEED_EP, LOOKUP_EP = daemon.feed, daemon.lookup
    else:
        FEED_EP = os.environ.get("CONNREP_FEED")
        LOOKUP_EP = os.environ.get("CONNREP_LOOKUP")
        if not FEED_EP or not LOOKUP_EP:
            ap.error("give --daemon PATH, or CONNREP_FEED and CONNREP_LOOKUP")
    ok = False
    try:
        alive = (lambda: daemon.proc.poll() is None) if daemon else (lambda: True)
        if not wait_ready(alive):
            sys.stderr.write("the engine did not answer a stats request at %s\n" % LOOKUP_EP)
        else:
            prog = unittest.main(argv=[sys.argv[0]] + rest, exit=False, verbosity=2)
            ok = prog.result.wasSuccessful()
    finally:
        CTX.destroy(linger=0)
        if daemon is not None:
            status, log = daemon.stop()
            if status != 0 or not ok:
                sys.stderr.write("connrepd exit status %s; its log:\n%s" % (status, log))
            ok = ok and status == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
