//! The epoch's readings, judged without a Redis.

use super::*;

#[test]
fn reads_identity_from_info() {
    let info = "# Server\r\nredis_version:7.0.15\r\nrun_id:abc\r\n\r\n# Replication\r\n\
                role:master\r\nconnected_slaves:0\r\nmaster_replid:r1\r\nmaster_replid2:000\r\n";
    let id = RedisIdentity::parse(info).unwrap();
    assert_eq!(id.epoch(), "abc/r1");
    assert!(id.primary && !id.promoted);
    let promoted = info.replace("master_replid2:000", "master_replid2:r0");
    assert!(RedisIdentity::parse(&promoted).unwrap().promoted);
    let replica = info.replace("role:master", "role:slave");
    assert!(!RedisIdentity::parse(&replica).unwrap().primary);
    assert!(RedisIdentity::parse("# Server\r\n").is_err());
}

#[test]
fn judges_every_reading() {
    use EpochCheck::*;
    assert_eq!(judge(None, None, "a", false), Recorded("a".into()));
    assert_eq!(judge(Some("a"), None, "a", true), Unchanged("a".into()));
    assert_eq!(
        judge(Some("a"), Some("a"), "a", true),
        Unchanged("a".into())
    );
    let changed = |before: &str, everything_lost| Changed {
        before: before.into(),
        now: "b".into(),
        everything_lost,
    };
    assert_eq!(judge(Some("a"), None, "b", true), changed("a", false));
    assert_eq!(judge(Some("a"), Some("a"), "b", true), changed("a", false));
    assert_eq!(
        judge(Some("b"), Some("a"), "b", true),
        changed("a", false),
        "another process recorded it first"
    );
    assert_eq!(
        judge(None, Some("a"), "b", true),
        changed("a", true),
        "emptied Redis"
    );
    let campaign = EpochScope::Campaign(CampaignId::parse("c").unwrap());
    assert_eq!(
        judge_in(&campaign, None, Some("b"), "b", false),
        Forgotten,
        "a campaign deleted on the same primary"
    );
    assert_eq!(
        judge_in(&campaign, None, Some("a"), "b", false),
        changed("a", true),
        "a shard that restarted empty"
    );
}
