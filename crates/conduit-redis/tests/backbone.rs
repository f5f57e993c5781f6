//! The backbone against a real `redis-server` on a loopback port of its own (see `conduit_redis::testing`).

use conduit_redis::testing::{Persistence, RedisServer};
use conduit_redis::{BackboneError, Entry, History, HistoryRequest, Reader, ReaderEvent, RedisConfig, RedisNode};
use conduit_sse::Event;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

/// Generous: the machine may be busy building.
const WAIT: Duration = Duration::from_secs(10);

fn config(server: &RedisServer) -> RedisConfig {
    let mut config = RedisConfig::from_url(&server.url()).unwrap();
    config.reconnect_initial = Duration::from_millis(20);
    config.reconnect_max = Duration::from_millis(200);
    config
}

/// A node whose reader's events come out of a channel.
fn node_with_reader(config: RedisConfig) -> (RedisNode, Reader, Receiver<ReaderEvent>) {
    let node = RedisNode::new(config).unwrap();
    let (tx, rx) = channel();
    let reader = node
        .start_reader(move |event| {
            let _ = tx.send(event);
        })
        .unwrap();
    (node, reader, rx)
}

/// Waits for the first event that `pick` takes, dropping the others.
fn wait_for<T>(rx: &Receiver<ReaderEvent>, what: &str, mut pick: impl FnMut(ReaderEvent) -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(event) => {
                if let Some(found) = pick(event) {
                    return found;
                }
            }
            Err(RecvTimeoutError::Timeout) => panic!("no {what} within {WAIT:?}"),
            Err(RecvTimeoutError::Disconnected) => panic!("the reader stopped before {what}"),
        }
    }
}

fn joined(rx: &Receiver<ReaderEvent>, topic: &str) -> (Vec<Entry>, u64) {
    wait_for(rx, &format!("Joined {topic}"), |e| match e {
        ReaderEvent::Joined { topic: t, tail, through } if &*t == topic => Some((tail, through)),
        _ => None,
    })
}

/// Waits until every one of `topics` has joined, whatever the order; their tails.
fn joined_all(rx: &Receiver<ReaderEvent>, topics: &[&str]) -> HashMap<String, Vec<Entry>> {
    let mut tails = HashMap::new();
    while tails.len() < topics.len() {
        let (topic, tail) = wait_for(rx, &format!("Joined {topics:?}"), |e| match e {
            ReaderEvent::Joined { topic, tail, .. } if topics.contains(&&*topic) => Some((topic, tail)),
            _ => None,
        });
        tails.insert(topic.to_string(), tail);
    }
    tails
}

/// Asks for the history after `after` and waits for the answer.
fn history_after(reader: &Reader, rx: &Receiver<ReaderEvent>, after: u64, topics: &[&str], max: usize) -> History {
    static TOKEN: AtomicU64 = AtomicU64::new(1);
    let token = TOKEN.fetch_add(1, Ordering::Relaxed);
    let topics = topics.iter().map(|&t| Arc::from(t)).collect();
    reader.request_history(HistoryRequest { token, after, topics, max });
    wait_for(rx, "history", |e| match e {
        ReaderEvent::History { token: t, result } if t == token => Some(result.unwrap()),
        _ => None,
    })
}

/// Collects batch entries until `count` have arrived, checking the batches' order as it goes.
fn collect(rx: &Receiver<ReaderEvent>, count: usize) -> Vec<Entry> {
    let mut entries: Vec<Entry> = Vec::new();
    while entries.len() < count {
        let batch = wait_for(rx, &format!("event {} of {count}", entries.len() + 1), |e| match e {
            ReaderEvent::Batch { entries, gaps, through } => {
                assert!(gaps.is_empty(), "{gaps:?}");
                assert!(entries.iter().all(|e| e.seq <= through));
                Some(entries)
            }
            ReaderEvent::NewEpoch { .. } => panic!("an unexpected new epoch"),
            _ => None,
        });
        entries.extend(batch);
    }
    entries
}

fn seqs(entries: &[Entry]) -> Vec<u64> {
    entries.iter().map(|e| e.seq).collect()
}

fn data(entries: &[Entry]) -> Vec<String> {
    entries.iter().map(|e| e.event.data_str().unwrap_or_default().to_owned()).collect()
}

fn strictly_increasing(seqs: &[u64]) -> bool {
    seqs.windows(2).all(|w| w[0] < w[1])
}

#[test]
fn published_events_arrive_numbered_and_in_order() {
    let Some(server) = RedisServer::start(Persistence::None) else { return };
    let (node, reader, rx) = node_with_reader(config(&server));
    reader.follow("news");
    reader.follow("sport");
    let tails = joined_all(&rx, &["news", "sport"]);
    assert!(tails.values().all(Vec::is_empty));
    let own = Event::new().event("headline").unwrap().id("own-1").unwrap().data("with its own id");
    let published = [
        node.publish("news", &Event::new().data("one")).unwrap(),
        node.publish("sport", &Event::new().data("two\nlines").retry(Duration::from_secs(3))).unwrap(),
        node.publish("elsewhere", &Event::new().data("not followed")).unwrap(),
        node.publish("news", &own).unwrap(),
    ];
    assert_eq!(published, [1, 2, 3, 4]);
    let entries = collect(&rx, 3);
    assert_eq!(seqs(&entries), [1, 2, 4]);
    assert_eq!(data(&entries), ["one", "two\nlines", "with its own id"]);
    // The SSE id is the sequence number unless the event brought its own.
    let ids: Vec<&str> = entries.iter().map(|e| e.event.id_str().unwrap()).collect();
    assert_eq!(ids, ["1", "2", "own-1"]);
    assert_eq!(entries[2].event, own);
    assert_eq!(entries[1].event.retry_duration(), Some(Duration::from_secs(3)));
    // `prev` chains each topic's events.
    assert_eq!(entries.iter().map(|e| e.prev).collect::<Vec<_>>(), [0, 0, 1]);
    assert!(reader.is_up());
}

#[test]
fn concurrent_publishers_on_two_nodes_share_one_gapless_order() {
    let Some(server) = RedisServer::start(Persistence::None) else { return };
    let (_, reader, rx) = node_with_reader(config(&server));
    let topics = ["a", "b", "c"];
    for topic in topics {
        reader.follow(topic);
        joined(&rx, topic);
    }
    let nodes = [RedisNode::new(config(&server)).unwrap(), RedisNode::new(config(&server)).unwrap()];
    const PER_THREAD: usize = 200;
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let node = nodes[t % 2].clone();
            std::thread::spawn(move || {
                let mut got = Vec::new();
                for i in 0..PER_THREAD {
                    let topic = ["a", "b", "c"][(t + i) % 3];
                    let seq = node.publish(topic, &Event::new().data(format!("{t}:{i}"))).unwrap();
                    got.push((seq, topic, format!("{t}:{i}")));
                }
                got
            })
        })
        .collect();
    let mut published: Vec<(u64, &str, String)> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    published.sort();
    let total = 4 * PER_THREAD;
    // One sequence for all: every number once, none skipped.
    assert_eq!(published.iter().map(|p| p.0).collect::<Vec<_>>(), (1..=total as u64).collect::<Vec<_>>());
    let delivered = collect(&rx, total);
    assert_eq!(delivered.len(), total, "nothing twice");
    // Delivered in sequence order, each event where and what it was published as.
    let got: Vec<(u64, &str, String)> =
        delivered.iter().map(|e| (e.seq, &*e.topic, e.event.data_str().unwrap().to_owned())).collect();
    assert_eq!(got, published);
}

#[test]
fn a_topic_joins_promptly_and_leaves() {
    let Some(server) = RedisServer::start(Persistence::None) else { return };
    let mut config = config(&server);
    // Only the control connection's CLIENT UNBLOCK can make joins faster than this.
    config.block = Duration::from_secs(10);
    let (node, reader, rx) = node_with_reader(config);
    reader.follow("first");
    joined(&rx, "first");
    // The reader is now blocked on "first".
    std::thread::sleep(Duration::from_millis(100));
    for i in 0..5 {
        let topic = format!("later-{i}");
        let start = Instant::now();
        reader.follow(&topic);
        joined(&rx, &topic);
        let took = start.elapsed();
        assert!(took < Duration::from_secs(2), "joining took {took:?}");
    }
    // Leaving: the next turn says so, and the topic's events stop coming.
    reader.unfollow("later-0");
    node.publish("first", &Event::new().data("wake")).unwrap();
    wait_for(&rx, "Left later-0", |e| matches!(e, ReaderEvent::Left { topic } if &*topic == "later-0").then_some(()));
    node.publish("later-0", &Event::new().data("unheard")).unwrap();
    let seq = node.publish("later-1", &Event::new().data("heard")).unwrap();
    let entries = wait_for(&rx, "the later-1 event", |e| match e {
        ReaderEvent::Batch { entries, .. } if entries.iter().any(|e| e.seq == seq) => Some(entries),
        _ => None,
    });
    assert!(entries.iter().all(|e| &*e.topic != "later-0"), "{entries:?}");
}

#[test]
fn joining_loads_the_tail_and_history_reaches_further_back() {
    let Some(server) = RedisServer::start(Persistence::None) else { return };
    let mut config = config(&server);
    config.backlog = 10;
    let (node, reader, rx) = node_with_reader(config);
    // Interleave two topics: a gets the odd numbers, b the even ones.
    for i in 1..=40u64 {
        let topic = if i % 2 == 1 { "a" } else { "b" };
        assert_eq!(node.publish(topic, &Event::new().data(i.to_string())).unwrap(), i);
    }
    reader.follow("a");
    let (tail, through) = joined(&rx, "a");
    assert_eq!(through, 40);
    assert_eq!(seqs(&tail), (21..=39).step_by(2).collect::<Vec<_>>(), "the newest `backlog` events");
    assert_eq!(tail[0].prev, 19, "older events exist");

    // History after 30 for both topics, merged by sequence.
    let history = history_after(&reader, &rx, 30, &["a", "b"], 100);
    assert_eq!(seqs(&history.entries), (31..=40).collect::<Vec<_>>());
    assert_eq!((history.through, history.complete), (40, true));

    // Cut short by `max`: it says how far it got.
    let history = history_after(&reader, &rx, 30, &["a", "b"], 3);
    assert_eq!((seqs(&history.entries), history.through), (vec![31, 32, 33], 33));

    // Events trimmed after the position: what is left, marked incomplete. MAXLEN ~ trims whole nodes of 100
    // entries, so publish enough to make it trim.
    for i in 0..400 {
        node.publish("a", &Event::new().data(format!("more {i}"))).unwrap();
    }
    let history = history_after(&reader, &rx, 2, &["a"], 50);
    assert!(!history.complete);
    assert!(history.entries.first().is_some_and(|e| e.seq > 41), "{:?}", seqs(&history.entries));
    assert!(strictly_increasing(&seqs(&history.entries)));
}

#[test]
fn a_reader_that_falls_behind_the_backlog_reports_the_gap() {
    let Some(server) = RedisServer::start(Persistence::None) else { return };
    let mut config = config(&server);
    config.backlog = 10;
    config.batch = 10;
    let node = RedisNode::new(config).unwrap();
    let (tx, rx) = channel();
    let (stall_tx, stall_rx) = channel::<()>();
    let mut stalled = false;
    let reader = node
        .start_reader(move |event| {
            // Hold the reader up on its first batch, while the topic outruns its backlog.
            if matches!(event, ReaderEvent::Batch { .. }) && !stalled {
                stalled = true;
                let _ = stall_rx.recv_timeout(WAIT);
            }
            let _ = tx.send(event);
        })
        .unwrap();
    reader.follow("hot");
    joined(&rx, "hot");
    node.publish("hot", &Event::new().data("first")).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    for i in 0..1000 {
        node.publish("hot", &Event::new().data(i.to_string())).unwrap();
    }
    stall_tx.send(()).unwrap();
    let gaps = wait_for(&rx, "a gap", |e| match e {
        ReaderEvent::Batch { gaps, .. } if !gaps.is_empty() => Some(gaps),
        _ => None,
    });
    assert_eq!(&*gaps[0].topic, "hot");
    assert!(gaps[0].until > gaps[0].after + 1, "{gaps:?}");
}

#[test]
fn a_restart_with_appendonly_loses_nothing_and_publishes_fail_meanwhile() {
    let Some(mut server) = RedisServer::start(Persistence::AppendOnly) else { return };
    let (node, reader, rx) = node_with_reader(config(&server));
    reader.follow("t");
    joined(&rx, "t");
    for i in 1..=50 {
        node.publish("t", &Event::new().data(i.to_string())).unwrap();
    }
    let mut delivered = collect(&rx, 50);
    server.kill();
    // Down is reported, and publishing fails with a typed error within the timeouts.
    wait_for(&rx, "Down", |e| matches!(e, ReaderEvent::Down { .. }).then_some(()));
    assert!(!reader.is_up());
    let start = Instant::now();
    for _ in 0..3 {
        let err = node.publish("t", &Event::new().data("lost")).unwrap_err();
        assert!(matches!(err, BackboneError::Unavailable(_) | BackboneError::Uncertain(_)), "{err:?}");
    }
    assert!(start.elapsed() < Duration::from_secs(4), "{:?}", start.elapsed());
    server.restart();
    wait_for(&rx, "Up", |e| matches!(e, ReaderEvent::Up { .. }).then_some(()));
    // The publisher's backoff may still hold it for a moment.
    let deadline = Instant::now() + WAIT;
    let mut published = 0;
    while published < 50 {
        match node.publish("t", &Event::new().data((51 + published).to_string())) {
            Ok(_) => published += 1,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("{e}"),
        }
    }
    delivered.extend(collect(&rx, 50));
    let want: Vec<String> = (1..=100).map(|i| i.to_string()).collect();
    assert_eq!(data(&delivered), want, "everything once, in order");
    assert!(strictly_increasing(&seqs(&delivered)));
}

#[test]
fn a_restart_empty_is_a_new_epoch_with_higher_numbers() {
    let Some(mut server) = RedisServer::start(Persistence::None) else { return };
    let (node, reader, rx) = node_with_reader(config(&server));
    reader.follow("t");
    joined(&rx, "t");
    for i in 1..=10 {
        node.publish("t", &Event::new().data(i.to_string())).unwrap();
    }
    collect(&rx, 10);
    server.restart_empty();
    let through = wait_for(&rx, "NewEpoch", |e| match e {
        ReaderEvent::NewEpoch { through } => Some(through),
        ReaderEvent::Batch { .. } => panic!("a batch before the new epoch"),
        _ => None,
    });
    assert!(through >= 10, "numbers never go back: {through}");
    let (tail, _) = joined(&rx, "t");
    assert!(tail.is_empty(), "the new history is empty: {tail:?}");
    let seq = node.publish("t", &Event::new().data("after")).unwrap();
    assert!(seq > 10, "{seq}");
    assert_eq!(seqs(&collect(&rx, 1)), [seq]);
}

#[test]
fn a_fresh_node_on_a_kept_history_is_not_a_new_epoch() {
    let Some(server) = RedisServer::start(Persistence::None) else { return };
    let first = RedisNode::new(config(&server)).unwrap();
    for i in 1..=5 {
        first.publish("t", &Event::new().data(i.to_string())).unwrap();
    }
    let (node, reader, rx) = node_with_reader(config(&server));
    let through = wait_for(&rx, "Up", |e| match e {
        ReaderEvent::Up { through } => Some(through),
        ReaderEvent::NewEpoch { .. } => panic!("a new epoch"),
        _ => None,
    });
    assert_eq!(through, 5);
    reader.follow("t");
    let (tail, _) = joined(&rx, "t");
    assert_eq!(seqs(&tail), [1, 2, 3, 4, 5]);
    assert_eq!(node.publish("t", &Event::new().data("6")).unwrap(), 6);
    assert_eq!(seqs(&collect(&rx, 1)), [6]);
}

#[test]
fn publishing_without_redis_fails_at_once() {
    // A port nobody listens on: bind one, then close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut config = RedisConfig::from_url(&format!("redis://127.0.0.1:{port}")).unwrap();
    config.reconnect_initial = Duration::from_secs(30);
    config.reconnect_max = Duration::from_secs(30);
    let node = RedisNode::new(config).unwrap();
    let start = Instant::now();
    let first = node.publish("t", &Event::new().data("x")).unwrap_err();
    assert!(matches!(first, BackboneError::Unavailable(_)), "{first:?}");
    // Within the backoff, without even trying.
    let second = Instant::now();
    assert!(matches!(node.publish("t", &Event::new().data("x")), Err(BackboneError::Unavailable(_))));
    assert!(second.elapsed() < Duration::from_millis(50), "{:?}", second.elapsed());
    assert!(start.elapsed() < Duration::from_secs(2), "{:?}", start.elapsed());
}

#[test]
fn connections_stay_few_under_topic_churn() {
    let Some(server) = RedisServer::start(Persistence::None) else { return };
    let mut inspect = server.connection();
    let nodes: Vec<_> = (0..2).map(|_| node_with_reader(config(&server))).collect();
    const TOPICS: usize = 1000;
    let topic = |i: usize| format!("churn-{i}");
    // Every topic followed on one node or the other, then dropped, in waves of 100.
    for wave in 0..TOPICS / 100 {
        let range = wave * 100..(wave + 1) * 100;
        for i in range.clone() {
            nodes[i % 2].1.follow(&topic(i));
        }
        for (n, (_, _, rx)) in nodes.iter().enumerate() {
            let names: Vec<String> = range.clone().filter(|i| i % 2 == n).map(topic).collect();
            joined_all(rx, &names.iter().map(String::as_str).collect::<Vec<_>>());
        }
        // The reader keeps up: an event on the wave's last topic arrives.
        let last = range.end - 1;
        let (node, _, rx) = &nodes[last % 2];
        let seq = node.publish(&topic(last), &Event::new().data("ping")).unwrap();
        wait_for(rx, "the wave's event", |e| match e {
            ReaderEvent::Batch { entries, .. } if entries.iter().any(|e| e.seq == seq) => Some(()),
            _ => None,
        });
        for i in range {
            nodes[i % 2].1.unfollow(&topic(i));
        }
    }
    let list: String = redis::cmd("CLIENT").arg("LIST").query(&mut inspect).unwrap();
    let names: Vec<&str> = list.lines().filter_map(|l| l.split(' ').find_map(|f| f.strip_prefix("name="))).collect();
    let ours = names.iter().filter(|n| n.starts_with("conduit-")).count();
    // Two nodes: publisher, reader and control each, whatever the number of topics.
    assert!(ours <= 6, "{names:?}");
    assert!(list.lines().count() <= 7, "{list}");
    let distinct: HashSet<&&str> = names.iter().collect();
    assert!(distinct.len() <= 4, "{names:?}");
}
