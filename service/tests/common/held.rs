//! One issue script call held in Redis while others queue behind it: a batch formed by
//! construction, not by the scheduling of concurrent futures.

use std::future::Future;

use futures::future::join_all;

use super::RedisServer;

/// Starts `first` with Redis' writes paused, so it takes its campaign's only turn (a store
/// with one connection) and waits in Redis; starts `rest` while it waits, so they queue
/// behind it and go out together as one script call; lifts the pause. Answers in order,
/// `first`'s first.
pub async fn queued_behind<F: Future>(
    redis: &RedisServer,
    first: F,
    rest: Vec<F>,
) -> Vec<F::Output> {
    redis.pause_writes(10_000).await;
    tokio::pin!(first);
    assert!(
        futures::poll!(&mut first).is_pending(),
        "the first waits in Redis"
    );
    let rest = join_all(rest);
    tokio::pin!(rest);
    assert!(
        futures::poll!(&mut rest).is_pending(),
        "the rest wait for the turn"
    );
    redis.thaw().await;
    let mut answers = vec![first.await];
    answers.extend(rest.await);
    answers
}
