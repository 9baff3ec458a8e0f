//! Rows into PostgreSQL: a batch in one statement, retried until the database takes it;
//! a batch it refuses as data is written row by row and only the rows it still refuses go
//! to the dead-letter topic (a seq another user holds counted and logged as such).

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::message::{Message, OwnedMessage};
use tokio_util::sync::CancellationToken;

use super::Writer;
use super::dead_letter::{Letter, SEQ_CONFLICT};
use super::retry::Retry;
use stampede_core::Error;
use stampede_core::db;
use stampede_core::issuance::Issuance;
use stampede_core::message;

impl Writer<'_> {
    /// Writes `rows` (decoded from `sources`, index by index); false when shutdown came
    /// first, and then nothing may be committed (the batch is replayed later). One bad
    /// row must not hold the partition.
    pub(super) async fn write(&self, rows: &[Issuance], sources: &[&OwnedMessage]) -> bool {
        if rows.is_empty() {
            return true;
        }
        match self.insert_retrying(rows).await {
            None => return false,
            Some(Ok(())) => return true,
            Some(Err(e)) => tracing::error!(error = %e, "batch refused; writing row by row"),
        }
        for (row, source) in rows.iter().zip(sources) {
            match self.insert_retrying(std::slice::from_ref(row)).await {
                None => return false,
                Some(Ok(())) => {}
                Some(Err(e)) => {
                    if !self.refuse(row, source, &e).await {
                        return false;
                    }
                }
            }
        }
        true
    }

    /// Dead-letters a row the database refused; false when shutdown came first.
    async fn refuse(&self, row: &Issuance, source: &OwnedMessage, e: &Error) -> bool {
        let conflict = db::is_seq_conflict(e);
        let reason = if conflict {
            // Redis handed a seq that PostgreSQL already holds for another user: it lost
            // acknowledged writes. Loud, and kept whole in the dead-letter topic.
            tracing::error!(campaign = %row.campaign, seq = row.seq, "seq conflict: another user already holds this seq");
            SEQ_CONFLICT.to_owned()
        } else {
            e.to_string()
        };
        // Keyed by the row's user: relays send their messages unkeyed.
        let own;
        let payload = source.payload().unwrap_or_default();
        let payload = if message::is_batch(payload) {
            own = row.to_json();
            &own[..]
        } else {
            payload
        };
        let letter = Letter::of_one(source, payload, &row.user_id, &reason);
        let sent = self.dlq.send(letter, &self.shutdown).await;
        // Counted once it is dead-lettered: one abandoned at shutdown is replayed, and
        // would be counted again.
        if sent && conflict {
            let conflicts = &self.metrics.writer_seq_conflicts;
            conflicts.with_label_values(&[&row.campaign]).inc();
        }
        sent
    }

    /// Inserts `rows`, retrying with backoff everything but a refusal of the data itself
    /// (the database away, read-only, broken, misconfigured: it holds the partition until
    /// it is fixed, and nothing is skipped). `None` when shutdown came first; `Some(Err)`
    /// for a data error.
    async fn insert_retrying(&self, rows: &[Issuance]) -> Option<Result<(), Error>> {
        let mut retry = Retry::new("database write");
        loop {
            let limit = self.config.write_timeout + SERVER_FIRST;
            let give_up = give_up(limit, &self.shutdown);
            match db::insert_batch_until(self.pool, rows, give_up).await {
                Ok(new) => {
                    retry.succeeded();
                    self.record(rows, new);
                    return Some(Ok(()));
                }
                Err(e) if db::is_data_error(&e) => {
                    self.metrics.writer_db_errors.inc();
                    return Some(Err(e));
                }
                Err(Error::DatabaseGaveUp(_)) if self.shutdown.is_cancelled() => return None,
                Err(e) => {
                    self.metrics.writer_db_errors.inc();
                    retry.failed(&format_args!("{e} ({} rows)", rows.len()));
                }
            }
            if !retry.wait(&self.shutdown).await {
                return None;
            }
        }
    }

    fn record(&self, rows: &[Issuance], new: HashMap<String, u64>) {
        let m = &self.metrics;
        m.writer_batch_rows.observe(rows.len() as f64);
        let fresh: u64 = new.values().sum();
        m.writer_duplicates
            .inc_by((rows.len() as u64).saturating_sub(fresh));
        for (c, n) in &new {
            m.writer_rows.with_label_values(&[c]).inc_by(*n);
            // Exported at 0 from the campaign's first rows on, so that the first conflict
            // is an increase an alert can see, not a series that appears at 1.
            m.writer_seq_conflicts.with_label_values(&[c]);
        }
        let now_ms = now_ms();
        for r in rows {
            m.issue_to_db
                .observe((now_ms - r.issued_at_ms).max(0) as f64 / 1000.0);
        }
    }
}

/// How long past the server's own statement limit the writer waits for its answer before
/// giving up on the connection: a server that answers ends the write itself, keeping the
/// connection and, above all, not leaving a backend waiting on a lock.
const SERVER_FIRST: Duration = Duration::from_secs(5);

/// How long a write in flight when shutdown comes may still take: most take milliseconds,
/// and the pod's termination grace (30 s) must hold the rest of the shutdown too.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Resolves, with the reason, when a write started now must be given up: after `limit`,
/// or [`SHUTDOWN_GRACE`] after shutdown.
async fn give_up(limit: Duration, shutdown: &CancellationToken) -> String {
    let grace_over = async {
        shutdown.cancelled().await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        _ = tokio::time::sleep(limit) => format!("no answer within {limit:?}"),
        _ = grace_over => format!("shutting down, no answer within {SHUTDOWN_GRACE:?} of it"),
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
