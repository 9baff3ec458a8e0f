//! Batch messages follow the writers, on a real Kafka, Redis and PostgreSQL: a relay (mode
//! `auto`, as `serve` runs it) sends a batch outbox entry as one Kafka message once every
//! consumer of the campaign's topic is a writer of this release, goes back to a message per
//! coupon while an older consumer reads the topic too, and returns to batch messages once it
//! has left; every issuance lands in PostgreSQL once. A batch message whose row the database
//! refuses stores the rest and dead-letters that row alone, and an outbox entry the relay
//! cannot read is dead-lettered whole, not dropped. Unkeyed, one read's messages share a
//! partition. Slow; needs `scripts/stack up`.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::held::queued_behind;
use common::letters::{DeadLetters, issuance, produce, producer, write_and_dead_letter};
use common::pipeline::{Fixture, issue_range, relay_config, spawn_relay};
use common::stack::{kafka_config, row_seqs, wait_rows};
use common::{connect_store, eventually, id, key, outbox_len, sample, unique};
use rdkafka::consumer::{BaseConsumer, Consumer};
use stampede_core::batches::Batches;
use stampede_core::ids::UserId;
use stampede_core::issuance::topic;
use stampede_core::store::{Store, StoreConfig};
use stampede_service::relay::RelayConfig;

/// Eight new users in two issue script calls (one, then seven queued behind it: a batch
/// entry); returns how many Kafka messages the relay delivered for them.
async fn round(f: &Fixture, store: &Store, next_user: &mut usize) -> u64 {
    let counters = || {
        let text = f.metrics.render();
        let produced = format!(
            "stampede_relay_produced_total{{campaign=\"{}\"}}",
            f.campaign
        );
        (
            sample(&text, &produced),
            sample(&text, "stampede_relay_messages_total"),
        )
    };
    let (produced, messages) = counters();
    let c = id(&f.campaign);
    let users: Vec<UserId> = (*next_user..*next_user + 8)
        .map(|i| UserId::parse(&format!("u-{i}")).unwrap())
        .collect();
    *next_user += 8;
    let mut asks: Vec<_> = users.iter().map(|u| store.issue(&c, u)).collect();
    let first = asks.remove(0);
    for answer in queued_behind(&f.redis, first, asks).await {
        assert_eq!(answer.unwrap().label(), "issued");
    }
    eventually("the round delivered", Duration::from_secs(20), || async {
        let (p, m) = counters();
        (p >= produced + 8.0).then_some((m - messages) as u64)
    })
    .await
}

/// Rounds until one delivers `messages` messages (within 40 s: a relay looks at the
/// consumer groups every 5 s, a group settles in a few).
async fn until_rounds_deliver(f: &Fixture, store: &Store, next_user: &mut usize, messages: u64) {
    let limit = std::time::Instant::now() + Duration::from_secs(40);
    let mut seen = Vec::new();
    while std::time::Instant::now() < limit {
        let got = round(f, store, next_user).await;
        if got == messages {
            return;
        }
        seen.push(got);
    }
    panic!("no round delivered {messages} messages: {seen:?}");
}

/// A consumer of an earlier release (its client id names no format) reading the topic in a
/// group of its own, polling on a thread until the flag drops; it leaves its group then.
fn older_reader(f: &Fixture) -> (Arc<AtomicBool>, std::thread::JoinHandle<()>) {
    let consumer: BaseConsumer = kafka_config(&f.brokers)
        .client()
        .set("group.id", unique("older-writer"))
        .set("client.id", "stampede")
        .create()
        .unwrap();
    consumer.subscribe(&[&topic(&f.campaign)]).unwrap();
    let running = Arc::new(AtomicBool::new(true));
    let flag = running.clone();
    let thread = std::thread::spawn(move || {
        while flag.load(Ordering::Relaxed) {
            let _ = consumer.poll(Duration::from_millis(100));
        }
        consumer.unsubscribe();
    });
    (running, thread)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_messages_wait_for_every_reader_of_the_topic() {
    let f = Fixture::new("msgfmt", 10_000, 2).await;
    // One connection, so that asks queue behind a call in Redis; batch entries whatever the
    // relay recorded (this test is about the messages).
    let config = StoreConfig {
        url: f.redis.url(),
        connections: 1,
        timeout: Duration::from_secs(2),
    };
    let store = connect_store(&config)
        .await
        .writing_outbox_batches(Batches::Always);
    let (writer, relay) = (f.spawn_writer(), f.spawn_relay());
    let mut next_user = 0;

    // Only our writer reads the topic: the batch entry of seven goes as one message.
    until_rounds_deliver(&f, &store, &mut next_user, 2).await;
    // An older consumer joins: a message per coupon, and it stays so while it reads.
    let (running, thread) = older_reader(&f);
    until_rounds_deliver(&f, &store, &mut next_user, 8).await;
    for _ in 0..3 {
        assert_eq!(round(&f, &store, &mut next_user).await, 8);
    }
    // It leaves: batch messages again.
    running.store(false, Ordering::Relaxed);
    thread.join().unwrap();
    until_rounds_deliver(&f, &store, &mut next_user, 2).await;

    let pool = f.pool().await;
    let n = next_user as i64;
    assert_eq!(
        wait_rows(&pool, &f.campaign, n, Duration::from_secs(60)).await,
        n
    );
    assert_eq!(
        row_seqs(&pool, &f.campaign).await,
        (1..=n).collect::<Vec<_>>()
    );
    let report = f.audit().await;
    assert!(report.clean, "codes, seqs and times as issued: {report:?}");
    f.stop([relay, writer]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_message_stores_its_good_rows_and_dead_letters_the_refused_one_alone() {
    let f = Fixture::new("msgfmt-dlq", 100, 1).await;
    let c = &f.campaign;
    // `second` holds a seq `holder` holds (Redis lost a write): the database refuses it.
    let batch = [
        issuance(c, "holder", 1),
        issuance(c, "second", 1),
        issuance(c, "other", 2),
    ];
    let p = producer(&f.brokers);
    produce(&p, c, "holder", &serde_json::to_vec(&batch).unwrap()).await;
    produce(&p, c, "empty", b"[]").await;
    let (writer, pool, letters) = write_and_dead_letter(&f, 2).await;
    let reasons = |key: &str| letters.get(key).cloned().unwrap_or_default();
    assert_eq!(reasons("second"), ["seq_conflict"], "{letters:?}");
    assert_eq!(
        reasons("empty").len(),
        1,
        "the empty batch is poison: {letters:?}"
    );
    assert!(
        !letters.contains_key("holder"),
        "the stored rows are not dead-lettered"
    );
    assert_eq!(row_seqs(&pool, c).await, [1, 2]);
    f.stop([writer]).await;
}

/// The relay's messages carry no key, so the producer keeps a linger's messages on one
/// partition: one produce request per linger, not one per partition. Six hundred coupons
/// relayed in one read reach at most two of six partitions (a linger's end may split the
/// read); keyed by user, as relays of earlier releases sent them, they reached all six.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_reads_messages_share_a_partition() {
    const N: usize = 600;
    let f = Fixture::new("msgfmt-sticky", N as u64, 6).await;
    // Issued before the relay starts, so that its first read takes them all; a long linger
    // so that a busy machine cannot split the read over several.
    issue_range(&f.store, &f.campaign, 0..N).await;
    let config = RelayConfig {
        linger_ms: 200,
        ..relay_config(&f.redis.url(), &f.brokers, "r")
    };
    let relay = spawn_relay(config, &f.metrics, &f.shutdown);
    let produced = format!(
        "stampede_relay_produced_total{{campaign=\"{}\"}}",
        f.campaign
    );
    eventually("every coupon relayed", Duration::from_secs(30), || async {
        (sample(&f.metrics.render(), &produced) >= N as f64).then_some(())
    })
    .await;
    let consumer: BaseConsumer = kafka_config(&f.brokers).client().create().unwrap();
    let name = topic(&f.campaign);
    let used = tokio::task::spawn_blocking(move || {
        let holds = |p: i32| consumer.fetch_watermarks(&name, p, Duration::from_secs(5));
        (0..6).filter(|&p| holds(p).unwrap().1 > 0).count()
    })
    .await
    .unwrap();
    assert!(
        (1..=2).contains(&used),
        "{N} coupons of one read reached {used} of 6 partitions"
    );
    f.stop([relay]).await;
}

/// An outbox entry only something other than the issue script could write (a coupon without
/// its seq) is not dropped: the relay sends it whole to the campaign's dead-letter topic,
/// keyed by its entry id, and removes it from the outbox only once Kafka has the letter;
/// the coupons around it are relayed as ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_outbox_entry_goes_to_the_dead_letter_topic_and_not_away() {
    let f = Fixture::new("msgfmt-scribbled", 10, 1).await;
    let c = &f.campaign;
    let letters = DeadLetters::open(&f.brokers, c);
    issue_range(&f.store, c, 0..2).await;
    let scribbled: String = redis::cmd("XADD")
        .arg(key(c, "outbox"))
        .arg("*")
        .arg(&["campaign", c.as_str(), "user", "scribbled", "code", "HAND"])
        .query_async(&mut f.redis.conn().await)
        .await
        .unwrap();
    issue_range(&f.store, c, 2..4).await;

    let relay = f.spawn_relay();
    let letter = letters.next(Duration::from_secs(30)).await;
    let letter = letter.expect("the malformed entry's dead letter");
    assert_eq!(
        (letter.key.as_str(), letter.reason.as_str()),
        (scribbled.as_str(), "malformed_outbox_entry")
    );
    eventually("the outbox emptied", Duration::from_secs(30), || async {
        (outbox_len(&f.redis, c).await == 0).then_some(())
    })
    .await;
    let text = f.metrics.render();
    let produced = format!("stampede_relay_produced_total{{campaign=\"{c}\"}}");
    assert_eq!(sample(&text, &produced), 4.0, "the coupons around it");
    let lettered = format!("stampede_dead_lettered_total{{topic=\"{}\"}}", topic(c));
    assert_eq!(sample(&text, &lettered), 1.0);
    assert!(
        letters.next(Duration::from_secs(1)).await.is_none(),
        "one letter"
    );
    f.stop([relay]).await;
}
