use super::*;
use crate::issuance::tests::{batch_fields, five_fields, sample};

fn other() -> Issuance {
    Issuance {
        user_id: "u-2".into(),
        seq: 8,
        coupon_code: "DEF".into(),
        ..sample()
    }
}

#[test]
fn a_batch_entry_makes_one_batch_message_that_decodes_to_its_coupons() {
    let (a, b) = (sample(), other());
    let fields = batch_fields("c", a.issued_at_ms, &[&a, &b]);
    let records = KafkaRecord::all_from_stream_fields(fields.clone(), true).unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].issuances, 2);
    assert_eq!(decode(&records[0].payload).unwrap(), [a.clone(), b.clone()]);
    // Without batch messages: a message per coupon, each decoding to its one.
    let singles = KafkaRecord::all_from_stream_fields(fields, false).unwrap();
    let decoded: Vec<Issuance> = singles
        .iter()
        .flat_map(|r| decode(&r.payload).unwrap())
        .collect();
    assert_eq!(decoded, [a.clone(), b]);
    assert!(singles.iter().all(|r| r.issuances == 1));
    // A single entry stays one single message either way.
    let one = KafkaRecord::all_from_stream_fields(five_fields(&a), true).unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(decode(&one[0].payload).unwrap(), [a]);
}

#[test]
fn poison_messages_are_refused_whole_with_a_reason() {
    let good = sample().to_json();
    let bad = Issuance { seq: 0, ..sample() }.to_json();
    let cases: Vec<Vec<u8>> = vec![
        b"[]".to_vec(),
        b" [".to_vec(),
        b"[1]".to_vec(),
        [b"[".as_slice(), &good, b",", &bad, b"]"].concat(),
        [b"[".as_slice(), &good, b",{\"extra\":1}]"].concat(),
        b"not json".to_vec(),
        bad,
    ];
    for payload in cases {
        let why = decode(&payload).unwrap_err();
        assert!(!why.is_empty(), "{}", String::from_utf8_lossy(&payload));
    }
    let spaced = [b" \n[".as_slice(), &good, b"]"].concat();
    assert_eq!(decode(&spaced).unwrap(), [sample()]);
}

#[test]
fn a_writer_of_this_release_names_its_format() {
    assert_eq!(format_of(&writer_client_id()), FORMAT);
    assert_eq!(
        format_of("stampede"),
        1,
        "librdkafka's client id of earlier writers"
    );
}

fn member<'a>(client_id: &'a str, metadata: &'a [u8], assignment: &'a [u8]) -> GroupMember<'a> {
    GroupMember {
        client_id,
        metadata,
        assignment,
    }
}

/// A topic name as the consumer group protocol encodes it, inside other bytes.
fn protocol_bytes(topics: &[&str]) -> Vec<u8> {
    let mut b = vec![0, 1, 0, 0, 0, topics.len() as u8];
    for t in topics {
        b.extend((t.len() as u16).to_be_bytes());
        b.extend(t.as_bytes());
        b.extend([0, 0, 0, 0]);
    }
    b
}

#[test]
fn the_lowest_format_among_the_members_that_read_a_topic() {
    let (mine, longer) = (
        protocol_bytes(&["stampede.a"]),
        protocol_bytes(&["stampede.ab"]),
    );
    let (mine, longer) = (&mine[..], &longer[..]);
    let new = "stampede-writer@2";
    assert_eq!(lowest_reader_format([], "stampede.a"), None);
    // An older client reading another topic, whose name merely starts with ours, is no reader.
    let members = [member(new, mine, b""), member("stampede", longer, longer)];
    assert_eq!(lowest_reader_format(members, "stampede.a"), Some(2));
    assert_eq!(lowest_reader_format(members, "stampede.ab"), Some(1));
    assert_eq!(lowest_reader_format(members, "stampede.b"), None);
    // Assigned but no longer subscribed (or the other way round) still reads it.
    let members = [member(new, b"", mine), member("stampede", b"", mine)];
    assert_eq!(lowest_reader_format(members, "stampede.a"), Some(1));
    // A member that shows neither (a group between rebalances) counts for every topic.
    let members = [member(new, mine, mine), member("old", b"", b"")];
    assert_eq!(lowest_reader_format(members, "stampede.a"), Some(1));
}
