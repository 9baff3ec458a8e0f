"""PostgreSQL alone: ways to store the writer's rows, per ROWS rows in batches of BATCH.

Run by bench/pg-insert.sh. Each method fills a fresh copy of coupon_issuances (its keys
included), one transaction per batch as the writer commits them, methods alternated REPS
times; it prints the CPU of every postgres process (/proc utime+stime, so the WAL writer
and checkpointer count) per row, and the wall time. Methods:
  unnest       the writer's INSERT ... SELECT FROM UNNEST (arrays bound in binary)
  copy_text    COPY ... FROM STDIN, text format
  copy_binary  COPY ... FROM STDIN (FORMAT binary), what the writer sends
  staging      COPY binary into a temporary table, then INSERT ... SELECT ... ON CONFLICT
Or, with the one argument `collation`: the writer's COPY (binary) of users arriving in random
order into the table as migrated in a database whose default collation is a language's (ICU
en-US, a database `bench_icu` made once), as its first migration left it (the keys in that
language's order) and in the stack's C database, alternated REPS times.
"""
import datetime
import os
import random
import string
import sys
import time

import psycopg

URL = os.environ["STAMPEDE_DATABASE_URL"]
ROWS, BATCH, REPS = int(os.environ.get("ROWS", 200000)), int(os.environ.get("BATCH", 500)), int(os.environ.get("REPS", 3))
HZ = os.sysconf("SC_CLK_TCK")
COLS = "(campaign, user_id, seq, coupon_code, issued_at)"


def pg_ticks():
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                s = f.read()
            name = s[s.index("(") + 1 : s.rindex(")")]
            if not name.startswith("postgres"):
                continue
            fields = s[s.rindex(")") + 2 :].split()
            total += int(fields[11]) + int(fields[12])
        except (FileNotFoundError, ProcessLookupError, ValueError):
            pass
    return total


def batches(tag):
    now = int(time.time() * 1000)
    for b in range(ROWS // BATCH):
        rows = []
        for i in range(BATCH):
            n = b * BATCH + i + 1
            code = "".join(random.choices(string.ascii_uppercase + string.digits, k=12))
            rows.append((f"bench-{tag}-user-{n:08d}", n, code, now + n // 50))
        yield rows


def unnest(conn, table, rows, campaign):
    conn.execute(
        f"INSERT INTO {table} {COLS} SELECT %s, u, s, code, to_timestamp(ms / 1000.0) "
        "FROM UNNEST(%s::text[], %s::int8[], %s::text[], %s::int8[]) AS t(u, s, code, ms)",
        (campaign, [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], [r[3] for r in rows]),
        binary=True,
    )


def ts(ms):
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc)


def copy_text(conn, table, rows, campaign):
    with conn.cursor().copy(f"COPY {table} {COLS} FROM STDIN") as cp:
        for u, s, c, ms in rows:
            cp.write_row((campaign, u, s, c, ts(ms)))


def copy_binary(conn, table, rows, campaign):
    with conn.cursor().copy(f"COPY {table} {COLS} FROM STDIN (FORMAT BINARY)") as cp:
        cp.set_types(["text", "text", "int8", "text", "timestamptz"])
        for u, s, c, ms in rows:
            cp.write_row((campaign, u, s, c, ts(ms)))


def staging(conn, table, rows, campaign):
    cur = conn.cursor()
    with cur.copy(f"COPY stage {COLS} FROM STDIN (FORMAT BINARY)") as cp:
        cp.set_types(["text", "text", "int8", "text", "timestamptz"])
        for u, s, c, ms in rows:
            cp.write_row((campaign, u, s, c, ts(ms)))
    cur.execute(f"INSERT INTO {table} {COLS} SELECT * FROM stage ON CONFLICT (campaign, user_id) DO NOTHING")


def shuffled_batches(tag):
    """Users in random order, as a stampede brings them: inserts land all over the index."""
    for rows in batches(tag):
        yield [(f"user-{random.getrandbits(64):016x}-{tag}", s, c, ms) for _, s, c, ms in rows]


# The table as the first migration made it, with the keys' collation as given.
TABLE = """CREATE TABLE {table} (
    campaign text {coll} NOT NULL, user_id text {coll} NOT NULL, seq bigint NOT NULL CHECK (seq > 0),
    coupon_code text NOT NULL, issued_at timestamptz NOT NULL,
    persisted_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (campaign, user_id), UNIQUE (campaign, seq))"""


def icu_url():
    """The URL of a database whose default collation is ICU en-US (made once)."""
    with psycopg.connect(URL, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = 'bench_icu'").fetchone():
            conn.execute("CREATE DATABASE bench_icu LOCALE_PROVIDER icu ICU_LOCALE 'en-US' "
                         "LOCALE 'C.UTF-8' TEMPLATE template0")
    base, _, query = URL.partition("?")
    return base.rsplit("/", 1)[0] + "/bench_icu" + ("?" + query if query else "")


def collation():
    """The writer's binary COPY in a C database, in an ICU en-US one, and there with the keys
    `COLLATE "C"`."""
    icu = icu_url()

    def variant(label, url, coll):
        create = TABLE.format(table="collbench", coll=coll)
        return label, lambda rep: measure(label, rep, url, "collbench", create,
                                          shuffled_batches(f"{rep}"), copy_binary,
                                          "team-a.spring-sale")

    alternate([variant("C database", URL, ""), variant("en-US database", icu, ""),
               variant('en-US database, keys "C"', icu, 'COLLATE "C"')])


METHODS = {"unnest": unnest, "copy_text": copy_text, "copy_binary": copy_binary, "staging": staging}


def stage(conn):
    conn.execute("CREATE TEMP TABLE stage (campaign text, user_id text, seq int8, coupon_code text, "
                 "issued_at timestamptz) ON COMMIT DELETE ROWS")


def method(name):
    """One of METHODS into a fresh copy of coupon_issuances."""
    table = f"copybench_{name}"
    create = f"CREATE TABLE {table} (LIKE coupon_issuances INCLUDING ALL)"
    return name, lambda rep: measure(name, rep, URL, table, create, batches(f"{name}{rep}"),
                                     METHODS[name], "copybench",
                                     prepare=stage if name == "staging" else None)


def measure(label, rep, url, table, create, data, insert, campaign, prepare=None):
    """Fills a fresh `table` (made by `create`) with `data` of `campaign`, one transaction per
    batch through `insert`; prints and returns PostgreSQL's CPU per row."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {table}")
        conn.execute(create)
        data = list(data)
        conn.autocommit = False
        if prepare:
            prepare(conn)
            conn.commit()
        t0, w0 = pg_ticks(), time.monotonic()
        for rows in data:
            insert(conn, table, rows, campaign)
            conn.commit()
        wall, ticks = time.monotonic() - w0, pg_ticks() - t0
        conn.autocommit = True
        (n,) = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
        assert n == ROWS, (label, n)
        conn.execute(f"DROP TABLE {table}")
    us = ticks / HZ * 1e6 / ROWS
    print(f"{label:28} rep {rep}: postgres {us:5.1f} us/row, wall {wall:5.2f} s", flush=True)
    return us


def alternate(variants):
    """Runs each (label, run(rep)) of `variants` REPS times, alternated; prints the medians."""
    results = {label: [] for label, _ in variants}
    for rep in range(REPS):
        for label, run in variants:
            results[label].append(run(rep))
    for label, v in results.items():
        print(f"{label:28} postgres us/row: {', '.join(f'{x:.1f}' for x in v)}  median {sorted(v)[len(v) // 2]:.1f}")


if __name__ == "__main__":
    if sys.argv[1:] == ["collation"]:
        collation()
    else:
        alternate([method(n) for n in sys.argv[1:] or list(METHODS)])
