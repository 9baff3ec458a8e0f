//! PostgreSQL: embedded migrations, the idempotent batch insert, and the audit's reads.

use std::collections::HashMap;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};

use crate::Error;
use crate::issuance::Issuance;

mod copy;

/// Schema migrations, applied in order and recorded in `stampede_schema_migrations`.
const MIGRATIONS: &[(i32, &str)] = &[
    (1, include_str!("migrations/0001_coupon_issuances.sql")),
    (2, include_str!("migrations/0002_byte_order_keys.sql")),
];

/// Where a pod finds the database's CA as PEM text: it has no file for `sslrootcert`.
pub const CA_PEM_ENV: &str = "STAMPEDE_DATABASE_CA_PEM";

/// A small pool: the writer inserts whole batches, so a few connections carry it all.
/// TLS as the URL says (`sslmode`, `sslrootcert`); the CA may instead come as PEM text in
/// `STAMPEDE_DATABASE_CA_PEM`.
pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool, Error> {
    connect_with(url, max_connections, None).await
}

/// [`connect`], each session's statements ended by the server once they run longer than
/// `statement_timeout` (a write waiting on a lock then frees its backend, where a client
/// that merely gave up would leave it waiting; migrations are exempt).
pub async fn connect_with(
    url: &str,
    max_connections: u32,
    statement_timeout: Option<Duration>,
) -> Result<PgPool, Error> {
    let mut options: PgConnectOptions = url.parse()?;
    if let Some(limit) = statement_timeout {
        let ms = limit.as_millis().max(1).to_string();
        options = options.options([("statement_timeout", ms)]);
    }
    if let Some(pem) = std::env::var(CA_PEM_ENV)
        .ok()
        .filter(|p| !p.trim().is_empty())
    {
        options = options.ssl_root_cert_from_pem(pem.into_bytes());
    }
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await?)
}

/// `url` without its `sslrootcert` parameter, and the file that parameter named.
pub fn split_root_cert(url: &str) -> (String, Option<String>) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_owned(), None);
    };
    let mut file = None;
    let kept: Vec<&str> = query
        .split('&')
        .filter(|kv| match kv.strip_prefix("sslrootcert=") {
            Some(f) => {
                file = Some(f.to_owned());
                false
            }
            None => true,
        })
        .collect();
    if kept.is_empty() {
        (base.to_owned(), file)
    } else {
        (format!("{base}?{}", kept.join("&")), file)
    }
}

/// Applies pending migrations; safe to run from several processes at once.
pub async fn migrate(pool: &PgPool) -> Result<Vec<i32>, Error> {
    migrate_through(pool, i32::MAX).await
}

/// Applies pending migrations up to version `last` (a database as an earlier release left
/// it, for upgrade tests); returns the versions applied.
pub async fn migrate_through(pool: &PgPool, last: i32) -> Result<Vec<i32>, Error> {
    let mut tx = pool.begin().await?;
    // A migration may rebuild an index for minutes: no session's statement limit applies.
    sqlx::query("SET LOCAL statement_timeout = 0")
        .execute(&mut *tx)
        .await?;
    // One migrator at a time, cluster-wide, until this transaction ends.
    sqlx::query("SELECT pg_advisory_xact_lock(7215853)")
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS stampede_schema_migrations (
            version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .execute(&mut *tx)
    .await?;
    let done: Vec<i32> = sqlx::query_scalar("SELECT version FROM stampede_schema_migrations")
        .fetch_all(&mut *tx)
        .await?;
    let mut applied = Vec::new();
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v <= last) {
        if done.contains(version) {
            continue;
        }
        for stmt in statements(sql) {
            sqlx::query(stmt).execute(&mut *tx).await?;
        }
        sqlx::query("INSERT INTO stampede_schema_migrations (version) VALUES ($1)")
            .bind(version)
            .execute(&mut *tx)
            .await?;
        applied.push(*version);
    }
    tx.commit().await?;
    Ok(applied)
}

/// Inserts a batch with one COPY per campaign in it; rows whose `(campaign,
/// user_id)` is already present are skipped, so replays are harmless. A row whose seq
/// another user already holds is refused (a unique violation, [`is_seq_conflict`]): the
/// database must not hide that Redis handed one coupon to two users. Returns how many
/// rows were new, per campaign.
pub async fn insert_batch(pool: &PgPool, rows: &[Issuance]) -> Result<HashMap<String, u64>, Error> {
    insert_batch_until(pool, rows, std::future::pending()).await
}

/// [`insert_batch`], given up when `give_up` resolves first (with the reason,
/// [`Error::DatabaseGaveUp`]). The connection is then dropped, not handed back: it may wait
/// on a server whose node vanished mid-COPY, which TCP reports only after about 15
/// minutes, and the pool would wait as long to close it. Whether the batch was stored is
/// then unknown; the insert is idempotent, so it is written again.
pub async fn insert_batch_until(
    pool: &PgPool,
    rows: &[Issuance],
    give_up: impl Future<Output = String>,
) -> Result<HashMap<String, u64>, Error> {
    let mut by_campaign: HashMap<&str, Vec<&Issuance>> = HashMap::new();
    for r in rows {
        by_campaign.entry(&r.campaign).or_default().push(r);
    }
    let mut conn = pool.acquire().await?;
    let outcome = {
        let work = insert_by_campaign(&mut conn, by_campaign);
        tokio::select! {
            done = work => Ok(done),
            why = give_up => Err(why),
        }
    };
    match outcome {
        Ok(Err(e)) if !is_data_error(&e) => {
            // A server that went read-only (failover) or broke the session: the next
            // attempt gets a fresh connection, perhaps to the new primary.
            conn.close_on_drop();
            Err(e)
        }
        Ok(done) => done,
        Err(why) => {
            drop(conn.detach());
            Err(Error::DatabaseGaveUp(why))
        }
    }
}

/// One COPY per campaign, on one connection; the first failure ends the batch.
async fn insert_by_campaign(
    conn: &mut PgConnection,
    by_campaign: HashMap<&str, Vec<&Issuance>>,
) -> Result<HashMap<String, u64>, Error> {
    let mut new = HashMap::with_capacity(by_campaign.len());
    // Almost always one campaign: one COPY, no RETURNING to ship rows back.
    for (campaign, rows) in by_campaign {
        new.insert(
            campaign.to_owned(),
            insert_campaign_rows(conn, campaign, &rows).await?,
        );
    }
    Ok(new)
}

async fn insert_campaign_rows(
    conn: &mut PgConnection,
    campaign: &str,
    rows: &[&Issuance],
) -> Result<u64, Error> {
    // A plain COPY costs PostgreSQL about a fifth less per row than a plain INSERT and
    // half what an INSERT with ON CONFLICT does (no speculative insertion; docs/benchmarks.md).
    // Replays are rare (a rebalance, a restart), so a batch holding one pays for both.
    // `None`: a timestamp the binary format cannot carry; PostgreSQL's own insert says why.
    if let Some(copied) = copy::copy_rows(conn, campaign, rows).await {
        match copied {
            Err(e) if is_replay(&e) => {}
            done => return done,
        }
    }
    let user: Vec<&str> = rows.iter().map(|r| r.user_id.as_str()).collect();
    let seq: Vec<i64> = rows.iter().map(|r| r.seq as i64).collect();
    let code: Vec<&str> = rows.iter().map(|r| r.coupon_code.as_str()).collect();
    let ms: Vec<i64> = rows.iter().map(|r| r.issued_at_ms).collect();
    let done = sqlx::query(INSERT_SKIPPING_REPLAYS)
        .bind(campaign)
        .bind(&user[..])
        .bind(&seq[..])
        .bind(&code[..])
        .bind(&ms[..])
        .execute(conn)
        .await?;
    Ok(done.rows_affected())
}

/// One campaign's rows as UNNEST takes them, skipping those already present.
const INSERT_SKIPPING_REPLAYS: &str =
    "INSERT INTO coupon_issuances (campaign, user_id, seq, coupon_code, issued_at)
     SELECT $1, u, s, code, to_timestamp(ms / 1000.0)
     FROM UNNEST($2::text[], $3::int8[], $4::text[], $5::int8[]) AS t(u, s, code, ms)
     ON CONFLICT (campaign, user_id) DO NOTHING";

/// The rows of `users` in `campaign`, as issuances.
pub async fn rows_of_users(
    pool: &PgPool,
    campaign: &str,
    users: &[String],
) -> Result<Vec<Issuance>, Error> {
    let rows: Vec<(String, i64, String, i64)> = sqlx::query_as(
        "SELECT user_id, seq, coupon_code, (extract(epoch FROM issued_at) * 1000)::int8
           FROM coupon_issuances WHERE campaign = $1 AND user_id = ANY($2)",
    )
    .bind(campaign)
    .bind(users)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(user_id, seq, coupon_code, ms)| Issuance {
            campaign: campaign.to_owned(),
            user_id,
            seq: seq as u64,
            coupon_code,
            issued_at_ms: ms,
        })
        .collect())
}

/// Rows of one campaign, user → seq.
pub async fn persisted_seqs(pool: &PgPool, campaign: &str) -> Result<HashMap<String, u64>, Error> {
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT user_id, seq FROM coupon_issuances WHERE campaign = $1")
            .bind(campaign)
            .fetch_all(pool)
            .await?;
    Ok(rows.into_iter().map(|(u, s)| (u, s as u64)).collect())
}

/// Whether `campaign` has a row issued before `before_ms` (milliseconds since the epoch):
/// a row of a campaign of the same id deleted before (none while the table is not made).
pub async fn has_rows_before(pool: &PgPool, campaign: &str, before_ms: i64) -> Result<bool, Error> {
    let found = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM coupon_issuances WHERE campaign = $1
           AND issued_at < 'epoch'::timestamptz + $2 * interval '1 millisecond')",
    )
    .bind(campaign)
    .bind(before_ms)
    .fetch_one(pool)
    .await;
    match found {
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some(UNDEFINED_TABLE) => Ok(false),
        other => Ok(other?),
    }
}

/// SQLSTATE undefined_table: no writer has made the table yet.
const UNDEFINED_TABLE: &str = "42P01";

/// Rows of one campaign.
pub async fn persisted_count(pool: &PgPool, campaign: &str) -> Result<u64, Error> {
    let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM coupon_issuances WHERE campaign = $1")
        .bind(campaign)
        .fetch_one(pool)
        .await?;
    Ok(n as u64)
}

/// For the drift gauges of one campaign: rows with `seq <= watermark` (issued long enough
/// ago to have arrived) and rows with `seq > issued` (beyond anything Redis issued). Both
/// counts read the `(campaign, seq)` unique index.
pub async fn persisted_around(
    pool: &PgPool,
    campaign: &str,
    watermark: u64,
    issued: u64,
) -> Result<(u64, u64), Error> {
    let (settled, beyond): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE seq <= $2), count(*) FILTER (WHERE seq > $3)
           FROM coupon_issuances WHERE campaign = $1",
    )
    .bind(campaign)
    .bind(watermark as i64)
    .bind(issued as i64)
    .fetch_one(pool)
    .await?;
    Ok((settled as u64, beyond as u64))
}

/// The constraint behind `UNIQUE (campaign, seq)` (PostgreSQL's default name).
const SEQ_CONSTRAINT: &str = "coupon_issuances_campaign_seq_key";
/// The constraint behind `PRIMARY KEY (campaign, user_id)` (PostgreSQL's default name).
const USER_CONSTRAINT: &str = "coupon_issuances_pkey";

/// True when the database refused the data itself (SQLSTATE class 22 data exception, 23
/// integrity constraint violation, or 54000 program limit exceeded: a key too large for
/// its index): retrying cannot help, the row must go aside. Anything else (connection
/// lost, read-only after a failover, I/O, a missing table, TLS) is the database's trouble,
/// not the row's, and is worth retrying.
pub fn is_data_error(e: &Error) -> bool {
    sqlstate(e).is_some_and(|c| c.starts_with("22") || c.starts_with("23") || c == "54000")
}

/// True when a row was refused because another user already holds its seq.
pub fn is_seq_conflict(e: &Error) -> bool {
    violates(e, SEQ_CONSTRAINT)
}

/// True when a plain COPY was refused because a row of the user is already there (a replay).
fn is_replay(e: &Error) -> bool {
    violates(e, USER_CONSTRAINT)
}

/// True when `e` is a unique violation of `constraint`.
fn violates(e: &Error, constraint: &str) -> bool {
    match e {
        Error::Database(sqlx::Error::Database(db)) => {
            db.code().as_deref() == Some("23505") && db.constraint() == Some(constraint)
        }
        _ => false,
    }
}

fn sqlstate(e: &Error) -> Option<String> {
    match e {
        Error::Database(sqlx::Error::Database(db)) => db.code().map(|c| c.into_owned()),
        _ => None,
    }
}

/// The statements of a migration file, split at `;` (one prepared statement each).
fn statements(sql: &str) -> impl Iterator<Item = &str> {
    sql.split(';').map(str::trim).filter(|stmt| {
        stmt.lines()
            .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with("--"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_split_into_statements() {
        let sql = "-- a comment\nCREATE TABLE a (x int);\n\n-- only a comment;\nCREATE INDEX i ON a (x);\n";
        let got: Vec<&str> = statements(sql).collect();
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got[1].ends_with("CREATE INDEX i ON a (x)"));
        for (_, sql) in MIGRATIONS {
            assert_eq!(statements(sql).count(), 1, "{sql}");
        }
    }

    /// Compile-time guard: the writer's database futures must be `Send` so they can be
    /// spawned (sqlx's `raw_sql` is not, through a higher-ranked lifetime).
    #[allow(dead_code)]
    fn futures_are_send(pool: &'static PgPool, rows: &'static [Issuance]) {
        fn is_send<T: Send>(_: T) {}
        is_send(migrate(pool));
        is_send(insert_batch(pool, rows));
        is_send(insert_batch_until(pool, rows, async { String::new() }));
    }

    #[test]
    fn the_root_cert_parameter_comes_off_the_url() {
        let (url, file) =
            split_root_cert("postgres://u:p@h/db?sslmode=verify-full&sslrootcert=/ca.crt");
        assert_eq!(url, "postgres://u:p@h/db?sslmode=verify-full");
        assert_eq!(file.as_deref(), Some("/ca.crt"));
        let (url, file) = split_root_cert("postgres://u:p@h/db?sslrootcert=/ca.crt");
        assert_eq!(
            (url.as_str(), file.as_deref()),
            ("postgres://u:p@h/db", Some("/ca.crt"))
        );
        let plain = "postgres://u:p@h/db";
        assert_eq!(split_root_cert(plain), (plain.to_owned(), None));
    }
}
