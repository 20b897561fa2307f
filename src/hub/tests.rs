//! The hub against the in-process demo upstream, with time passed in instead of waited for.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::link::Answer;
use super::mrtr::{Held, Live, Origin, Parked, StateError};
use super::pool::Owner;
use super::Hub;
use crate::audit::{load_or_create_key, AuditWriter};
use crate::upstream::Upstream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_upstream_sessions_are_reaped_at_their_limit_and_restarted_on_next_use() {
    let dir = std::env::temp_dir().join(format!("palisade-hub-reap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let demo = crate::demo::spawn(([127, 0, 0, 1], 0).into())
        .await
        .unwrap();
    let toml = format!(
        "data_dir = {:?}\n[sessions]\nidle_timeout_secs = 60\n\
         [[upstream]]\nname = \"demo\"\nurl = \"http://{demo}/mcp\"\n",
        dir.display().to_string()
    );
    let cfg = crate::config::parse(&toml, "test", &|_| None).unwrap();
    let client = crate::upstream::client(Duration::from_secs(2));
    let uri = format!("http://{demo}/mcp").parse().unwrap();
    let fetcher =
        crate::controls::ssrf::fetch::Fetcher::new(cfg.ssrf.clone(), Duration::from_secs(2));
    let routes = vec![Arc::new(Upstream::new(
        &cfg.upstreams[0],
        uri,
        client,
        &fetcher,
        Arc::new(crate::clock::SystemClock),
        None,
    ))];
    let key = load_or_create_key(&dir).unwrap();
    let (audit, writer) = AuditWriter::start(
        &cfg.audit,
        key,
        cfg.limits.audit_wait,
        tokio::runtime::Handle::current(),
    )
    .unwrap();
    let pins = crate::controls::pinning::Pins::new(
        cfg.pinning.clone(),
        vec![Arc::from(cfg.upstreams[0].name.as_str())],
        audit.clone(),
    )
    .unwrap();
    let hub = Hub::new(&cfg, &routes, audit, Arc::new(pins));
    let alice = || Owner::Principal(Arc::from("alice"));

    let first = hub.conn_for(0, alice(), b"{}").await.unwrap();
    let opened = Instant::now();
    assert_eq!(hub.pool.live().len(), 1);
    // Within the limit: kept, and reused.
    hub.reap_at(opened + Duration::from_secs(59));
    assert!(Arc::ptr_eq(
        &hub.conn_for(0, alice(), b"{}").await.unwrap(),
        &first
    ));
    // Past it: closed and forgotten.
    hub.reap_at(opened + Duration::from_secs(61));
    assert!(hub.pool.live().is_empty());
    assert!(!first.is_alive(), "a reaped upstream session is retired");
    // The next request opens a new upstream session instead of reusing the reaped one.
    let again = hub.conn_for(0, alice(), b"{}").await.unwrap();
    assert!(!Arc::ptr_eq(&again, &first));
    assert!(again.is_alive());

    // A call parked for a 2026-07-28 client's retry is given up at its deadline, and its
    // handle is then unknown.
    let env = |name: &str| {
        crate::proto::Envelope::parse(
            bytes::Bytes::from(format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{name}","arguments":{{"b":1,"a":2}}}}}}"#
            )),
            64,
        )
        .unwrap()
    };
    let origin = Origin::of(&env("demo__echo")).unwrap();
    let parked = |expires| {
        Box::new(Parked {
            principal: Arc::from("alice"),
            origin: origin.clone(),
            u: 0,
            held: Held::Live(Live {
                conn: again.clone(),
                up_id: 1,
                answer: Answer::One(None),
                asked: Vec::new(),
            }),
            rounds: 1,
            expires,
        })
    };
    let now = Instant::now();
    let park = |p| {
        let body = hub.parking.park(p, Parked::live_result);
        let body: serde_json::Value = serde_json::from_slice(&body.unwrap()).unwrap();
        assert_eq!(body["resultType"], "input_required");
        body["requestState"].as_str().unwrap().to_owned()
    };
    let state = park(parked(now + Duration::from_secs(60)));
    hub.reap_at(now + Duration::from_secs(59));
    assert_eq!(hub.parking.count(), 1);
    hub.reap_at(now + Duration::from_secs(60));
    assert_eq!(hub.parking.count(), 0);
    assert!(matches!(
        hub.parking.take(&state, "alice", &origin, now),
        Err((StateError::Unknown, None))
    ));
    // Taken after its deadline (before the reaper saw it): unknown, and handed back to be
    // abandoned. The same arguments in another order are the same request.
    let state = park(parked(now + Duration::from_secs(1)));
    let reordered = Origin::of(&crate::proto::Envelope::parse(
        bytes::Bytes::from_static(
            br#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"arguments":{"a":2,"b":1},"name":"demo__echo"}}"#,
        ),
        64,
    )
    .unwrap())
    .unwrap();
    assert_eq!(reordered, origin);
    assert_ne!(Origin::of(&env("demo__other")).unwrap(), origin);
    assert!(matches!(
        hub.parking
            .take(&state, "alice", &reordered, now + Duration::from_secs(2)),
        Err((StateError::Unknown, Some(_)))
    ));

    writer.shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}
