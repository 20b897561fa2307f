use std::net::IpAddr;
use std::sync::Arc;

use super::algo::{take, Spec};
use super::*;
use crate::config::{Algorithm, KeyBy, RateLimitRule};

fn rule(name: &str, key: KeyBy, window_ms: u64, max: u32) -> RateLimitRule {
    RateLimitRule {
        name: name.into(),
        algorithm: Algorithm::SlidingWindow,
        window_ms,
        max,
        burst: max,
        key,
        methods: vec![],
        tools: vec![],
        upstreams: vec![],
    }
}

fn limiter(rules: &[RateLimitRule]) -> RateLimiter {
    RateLimiter::new(rules, Arc::new(MemoryLimitStore::new(10_000)))
}

fn subject<'a>(ip: &str, principal: Option<&'a str>) -> Subject<'a> {
    Subject {
        ip: ip.parse::<IpAddr>().unwrap(),
        principal,
        method: Some("tools/call"),
        upstream: Some("demo"),
        tool: Some("echo"),
    }
}

/// Requests admitted out of `n` at `now`.
fn admitted(l: &RateLimiter, stage: Stage, s: &Subject<'_>, n: usize, now: u64) -> usize {
    (0..n).filter(|_| l.admit(stage, s, now).is_ok()).count()
}

#[test]
fn a_sliding_window_never_admits_more_than_max_in_any_window() {
    // A request every 7 ms for 10 windows: every admitted request's trailing window holds
    // at most `max` admitted requests.
    let spec = Spec::Window {
        window_ms: 1000,
        max: 20,
    };
    let mut st = spec.fresh();
    let mut times = Vec::new();
    for t in (0..10_000u64).step_by(7) {
        if take(&spec, &mut st, 1_000_000 + t).admitted {
            times.push(t);
        }
    }
    for (i, &t) in times.iter().enumerate() {
        let inside = times[..=i].iter().filter(|&&u| u + 1000 > t).count();
        assert!(
            inside <= 20,
            "{inside} requests in the window ending at {t}"
        );
    }
    // And it is not stingy: at least max per window, less one slot, over the run.
    assert!(times.len() >= 170, "{}", times.len());
}

#[test]
fn a_sliding_window_reports_remaining_reset_and_retry() {
    let spec = Spec::Window {
        window_ms: 16_000,
        max: 3,
    };
    let mut st = spec.fresh();
    let now = 1_000_000;
    let a = take(&spec, &mut st, now);
    assert!(a.admitted);
    assert_eq!(a.remaining, 2);
    take(&spec, &mut st, now);
    let c = take(&spec, &mut st, now + 500);
    assert_eq!((c.admitted, c.remaining), (true, 0));
    let d = take(&spec, &mut st, now + 2000);
    assert!(!d.admitted);
    // The three fell in slot 1_000_000 / 1000 = 1000; it leaves the span at slot 1017.
    assert_eq!(d.retry_after_ms, 1_017_000 - (now + 2000));
    assert_eq!(d.reset_ms, 1_017_000);
    // Not yet at 1016.999 s, admitted at 1017 s.
    assert!(!take(&spec, &mut st, 1_016_999).admitted);
    assert!(take(&spec, &mut st, 1_017_000).admitted);
}

#[test]
fn a_token_bucket_allows_its_burst_then_refills_at_the_rate() {
    // Seed 003: 100 per minute with a burst of 10.
    let spec = Spec::bucket(60_000, 100, 10);
    let mut st = spec.fresh();
    let now = 5_000_000;
    let r: Vec<_> = (0..11).map(|_| take(&spec, &mut st, now)).collect();
    assert!(r[..10].iter().all(|t| t.admitted));
    assert_eq!(r[0].remaining, 9);
    assert_eq!(r[9].remaining, 0);
    assert!(!r[10].admitted);
    // One request is earned every 600 ms.
    assert_eq!(r[10].retry_after_ms, 600);
    assert!(!take(&spec, &mut st, now + 599).admitted);
    let t = take(&spec, &mut st, now + 600);
    assert!(t.admitted);
    assert_eq!(t.remaining, 0);
    // Full again 10 × 600 ms after the last admission's debt is paid.
    assert_eq!(t.reset_ms, now + 600 + 6000);
    let mut st2 = spec.fresh();
    take(&spec, &mut st2, now);
    assert_eq!(take(&spec, &mut st2, now + 60_000).remaining, 9);
}

#[test]
fn keys_separate_principals_addresses_and_tools() {
    let l = limiter(&[
        rule("user", KeyBy::Principal, 60_000, 2),
        rule("tool", KeyBy::PrincipalTool, 60_000, 1),
    ]);
    let now = 1_000_000;
    let alice = subject("10.0.0.1", Some("alice"));
    assert!(l.admit(Stage::Message, &alice, now).is_ok());
    // Same tool again: the per-tool rule refuses.
    let e = l.admit(Stage::Message, &alice, now).unwrap_err();
    assert!(
        matches!(&e, LimitError::Exceeded { rule, .. } if &**rule == "tool"),
        "{e:?}"
    );
    // Another tool: the per-user rule still has one (the refused call was taken back).
    let other = Subject {
        tool: Some("get_quote"),
        ..alice
    };
    assert!(l.admit(Stage::Message, &other, now).is_ok());
    // Bob is counted apart, even from the same address.
    let bob = subject("10.0.0.1", Some("bob"));
    assert!(l.admit(Stage::Message, &bob, now).is_ok());
    // Unauthenticated clients are counted per address.
    let anon = subject("10.0.0.2", None);
    assert!(l.admit(Stage::Message, &anon, now).is_ok());
    let anon2 = subject("10.0.0.3", None);
    assert!(l.admit(Stage::Message, &anon2, now).is_ok());
}

#[test]
fn an_ipv6_client_is_one_key_per_64() {
    let l = limiter(&[rule("ip", KeyBy::Ip, 60_000, 2)]);
    let now = 1_000_000;
    let s = |ip: &str| Subject {
        ip: ip.parse().unwrap(),
        principal: None,
        method: None,
        upstream: None,
        tool: None,
    };
    // Rotating the interface id inside one /64 does not buy a fresh allowance.
    assert!(l
        .admit(Stage::Connection, &s("2001:db8:1:2::1"), now)
        .is_ok());
    assert!(l
        .admit(Stage::Connection, &s("2001:db8:1:2::99"), now)
        .is_ok());
    assert!(l
        .admit(Stage::Connection, &s("2001:db8:1:2:ffff::7"), now)
        .is_err());
    assert!(l
        .admit(Stage::Connection, &s("2001:db8:1:3::1"), now)
        .is_ok());
    // IPv4 and its mapped IPv6 form are one client.
    assert!(l.admit(Stage::Connection, &s("192.0.2.1"), now).is_ok());
    assert!(l.admit(Stage::Connection, &s("192.0.2.1"), now).is_ok());
    assert!(l
        .admit(Stage::Connection, &s("::ffff:192.0.2.1"), now)
        .is_err());
}

#[test]
fn filters_and_stages_pick_the_rules() {
    let mut calls = rule("calls", KeyBy::Principal, 60_000, 1);
    calls.methods = vec!["tools/*".into()];
    calls.tools = vec!["place_*".into()];
    let ip = rule("ip", KeyBy::Ip, 60_000, 100);
    let l = limiter(&[calls, ip]);
    let now = 1_000_000;
    let mut s = subject("10.0.0.1", Some("alice"));
    // Unfiltered address rules run before authentication, the rest after parsing.
    assert_eq!(
        l.admit(Stage::Connection, &s, now)
            .unwrap()
            .unwrap()
            .remaining,
        99
    );
    assert_eq!(
        l.admit(Stage::Message, &s, now),
        Ok(None),
        "echo is not place_*"
    );
    s.tool = Some("place_order");
    assert_eq!(
        l.admit(Stage::Message, &s, now).unwrap().unwrap().remaining,
        0
    );
    assert!(l.admit(Stage::Message, &s, now).is_err());
    s.method = Some("resources/read");
    assert_eq!(l.admit(Stage::Message, &s, now), Ok(None));
}

#[test]
fn the_tightest_quota_is_reported() {
    let l = limiter(&[
        rule("wide", KeyBy::Global, 60_000, 1000),
        rule("narrow", KeyBy::Ip, 60_000, 5),
    ]);
    let q = l
        .admit(Stage::Connection, &subject("10.0.0.1", None), 1_000_000)
        .unwrap()
        .unwrap();
    assert_eq!((q.limit, q.remaining), (5, 4));
    // Slots of 3 750 ms; this one is slot 266, which leaves the span at slot 283.
    assert_eq!(q.reset_secs, (283 * 3750u64).div_ceil(1000));
}

#[test]
fn idle_keys_expire_and_a_full_store_refuses() {
    let l = RateLimiter::new(
        &[rule("ip", KeyBy::Ip, 1000, 5)],
        Arc::new(MemoryLimitStore::new(64)),
    );
    let now = 1_000_000;
    let s = |i: u32| Subject {
        ip: IpAddr::from(i.to_be_bytes()),
        principal: None,
        method: None,
        upstream: None,
        tool: None,
    };
    // 64 shards of one key each: some new key lands in an occupied shard quickly.
    let refused = (0..1000u32)
        .map(|i| l.admit(Stage::Connection, &s(i), now))
        .position(|r| matches!(r, Err(LimitError::Full(_))));
    assert!(refused.is_some(), "never full");
    assert!(l.sweep(now) > 0);
    // Once their windows pass, every key is forgotten and new ones fit again.
    assert_eq!(l.sweep(now + 2000), 0);
    assert!(l.admit(Stage::Connection, &s(5000), now + 2000).is_ok());
}

#[test]
fn concurrent_clients_never_get_more_than_the_limit() {
    let l = Arc::new(limiter(&[rule("global", KeyBy::Global, 60_000, 100)]));
    let now = 1_000_000;
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let l = l.clone();
            std::thread::spawn(move || {
                let s = subject("10.0.0.1", None);
                admitted(&l, Stage::Connection, &s, 50, now)
            })
        })
        .collect();
    let total: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(total, 100);
}

#[test]
fn globs() {
    for (p, t, want) in [
        ("tools/call", "tools/call", true),
        ("tools/*", "tools/call", true),
        ("tools/*", "tool/call", false),
        ("*", "", true),
        ("place_*", "place_order", true),
        ("*_order", "place_order", true),
        ("*_order", "place_orders", false),
        ("a*b*c", "axxbyyc", true),
        ("a*b*c", "axxcyyb", false),
        ("a*a", "a", false),
        ("a**", "abc", true),
    ] {
        assert_eq!(glob(p, t), want, "{p} vs {t}");
    }
}
