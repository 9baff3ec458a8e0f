//! PostgreSQL: embedded migrations, the idempotent batch insert, and the audit's reads.

use std::collections::HashMap;
use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};

use crate::Error;
use crate::issuance::Issuance;

/// Schema migrations, applied in order and recorded in `stampede_schema_migrations`.
const MIGRATIONS: &[(i32, &str)] = &[(1, include_str!("migrations/0001_coupon_issuances.sql"))];

/// A small pool: the writer inserts whole batches, so a few connections carry it all.
pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool, Error> {
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect(url)
        .await?)
}

/// Applies pending migrations; safe to run from several processes at once.
pub async fn migrate(pool: &PgPool) -> Result<Vec<i32>, Error> {
    let mut tx = pool.begin().await?;
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
    for (version, sql) in MIGRATIONS {
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

/// Inserts a batch in one statement; rows already present are skipped, so replays are
/// harmless. Returns how many rows were new, per campaign.
pub async fn insert_batch(pool: &PgPool, rows: &[Issuance]) -> Result<HashMap<String, u64>, Error> {
    let mut campaign = Vec::with_capacity(rows.len());
    let mut user = Vec::with_capacity(rows.len());
    let mut seq = Vec::with_capacity(rows.len());
    let mut code = Vec::with_capacity(rows.len());
    let mut ms = Vec::with_capacity(rows.len());
    for r in rows {
        campaign.push(r.campaign.clone());
        user.push(r.user_id.clone());
        seq.push(r.seq as i64);
        code.push(r.coupon_code.clone());
        ms.push(r.issued_at_ms);
    }
    let new: Vec<(String, i64)> = sqlx::query_as(
        "WITH ins AS (
           INSERT INTO coupon_issuances (campaign, user_id, seq, coupon_code, issued_at)
           SELECT c, u, s, code, to_timestamp(ms / 1000.0)
           FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::text[], $5::int8[])
                AS t(c, u, s, code, ms)
           ON CONFLICT DO NOTHING
           RETURNING campaign)
         SELECT campaign, count(*) FROM ins GROUP BY campaign",
    )
    .bind(&campaign)
    .bind(&user)
    .bind(&seq)
    .bind(&code)
    .bind(&ms)
    .fetch_all(pool)
    .await?;
    Ok(new.into_iter().map(|(c, n)| (c, n as u64)).collect())
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

/// Row count per campaign, for the unpersisted-issuances metric.
pub async fn persisted_counts(pool: &PgPool) -> Result<HashMap<String, u64>, Error> {
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT campaign, count(*) FROM coupon_issuances GROUP BY campaign")
            .fetch_all(pool)
            .await?;
    Ok(rows.into_iter().map(|(c, n)| (c, n as u64)).collect())
}

/// True for errors worth retrying (the database away or busy) rather than a bug.
pub fn is_transient(e: &Error) -> bool {
    match e {
        Error::Database(sqlx::Error::Database(db)) => {
            // Class 08 connection, 53 resources, 57 operator intervention (shutdown),
            // 40 serialization/deadlock.
            db.code()
                .is_some_and(|c| ["08", "53", "57", "40"].iter().any(|p| c.starts_with(p)))
        }
        Error::Database(
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Protocol(_),
        ) => true,
        _ => false,
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
        assert_eq!(statements(MIGRATIONS[0].1).count(), 1);
    }

    /// Compile-time guard: the writer's database futures must be `Send` so they can be
    /// spawned (sqlx's `raw_sql` is not, through a higher-ranked lifetime).
    #[allow(dead_code)]
    fn futures_are_send(pool: &'static PgPool, rows: &'static [Issuance]) {
        fn is_send<T: Send>(_: T) {}
        is_send(migrate(pool));
        is_send(insert_batch(pool, rows));
    }
}
