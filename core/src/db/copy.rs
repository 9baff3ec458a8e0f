//! One campaign's rows as `COPY … FROM STDIN (FORMAT binary)`: PostgreSQL spends about a
//! fifth less per row on it than on the `UNNEST` insert (no per-row expressions, the heap
//! filled in bulk; docs/benchmarks.md).

use sqlx::postgres::PgConnection;

use crate::Error;
use crate::issuance::Issuance;

/// The COPY the writer's plain insert is; fails whole on a row already present.
const COPY_ROWS: &str = "COPY coupon_issuances (campaign, user_id, seq, coupon_code, issued_at) \
     FROM STDIN (FORMAT binary)";

/// Unix ms of PostgreSQL's epoch (2000-01-01 UTC), which binary timestamps count from.
const PG_EPOCH_UNIX_MS: i64 = 946_684_800_000;

/// Copies `rows` of `campaign`; the rows stored. `None` (nothing sent) when a timestamp
/// does not fit the binary format: the caller's statement then lets PostgreSQL say why.
pub(super) async fn copy_rows(
    conn: &mut PgConnection,
    campaign: &str,
    rows: &[&Issuance],
) -> Option<Result<u64, Error>> {
    let data = encode(campaign, rows)?;
    Some(send(conn, data).await)
}

async fn send(conn: &mut PgConnection, data: Vec<u8>) -> Result<u64, Error> {
    let mut copy = conn.copy_in_raw(COPY_ROWS).await?;
    // A send that fails is an I/O error: the caller closes the connection.
    copy.send(data).await?;
    // A refused row (a replay, a seq conflict) fails the whole COPY here, nothing stored.
    Ok(copy.finish().await?)
}

/// The binary COPY stream: signature, flags, no extension; per row five fields, each as
/// its length and bytes; then the trailer.
fn encode(campaign: &str, rows: &[&Issuance]) -> Option<Vec<u8>> {
    let per_row: usize = 2 + 5 * 4 + campaign.len() + 8 + 8;
    let text: usize = rows
        .iter()
        .map(|r| r.user_id.len() + r.coupon_code.len())
        .sum();
    let mut out = Vec::with_capacity(19 + rows.len() * per_row + text + 2);
    out.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
    out.extend_from_slice(&0i32.to_be_bytes());
    out.extend_from_slice(&0i32.to_be_bytes());
    for r in rows {
        let micros = r
            .issued_at_ms
            .checked_sub(PG_EPOCH_UNIX_MS)?
            .checked_mul(1000)?;
        out.extend_from_slice(&5i16.to_be_bytes());
        field(&mut out, campaign.as_bytes());
        field(&mut out, r.user_id.as_bytes());
        field(&mut out, &(r.seq as i64).to_be_bytes());
        field(&mut out, r.coupon_code.as_bytes());
        field(&mut out, &micros.to_be_bytes());
    }
    out.extend_from_slice(&(-1i16).to_be_bytes());
    Some(out)
}

fn field(out: &mut Vec<u8>, bytes: &[u8]) {
    // Text fields come from Kafka messages of at most a few MB: far below i32::MAX.
    out.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(user: &str, seq: u64, ms: i64) -> Issuance {
        Issuance {
            campaign: "c".into(),
            user_id: user.into(),
            seq,
            coupon_code: "CODE".into(),
            issued_at_ms: ms,
        }
    }

    #[test]
    fn a_row_is_five_length_prefixed_fields_between_signature_and_trailer() {
        let r = row("u1", 7, PG_EPOCH_UNIX_MS + 2);
        let out = encode("camp", &[&r]).unwrap();
        assert_eq!(&out[..11], b"PGCOPY\n\xff\r\n\0");
        let mut expected = vec![0, 5];
        for f in [
            &b"camp"[..],
            b"u1",
            &7i64.to_be_bytes(),
            b"CODE",
            &2000i64.to_be_bytes(),
        ] {
            expected.extend_from_slice(&(f.len() as i32).to_be_bytes());
            expected.extend_from_slice(f);
        }
        assert_eq!(&out[19..out.len() - 2], &expected[..]);
        assert_eq!(&out[out.len() - 2..], &[0xff, 0xff]);
    }

    #[test]
    fn a_timestamp_beyond_the_format_is_left_to_the_statement() {
        assert!(encode("c", &[&row("u", 1, i64::MAX)]).is_none());
        assert!(encode("c", &[&row("u", 1, i64::MIN)]).is_none());
        assert!(encode("c", &[&row("u", 1, 0)]).is_some());
    }
}
