use super::*;
use crate::controls::authn::Authenticator;

fn authz(extra: &str) -> Authz {
    let text = format!(
        r#"
[auth]
methods = ["bearer"]
[[auth.bearer]]
id = "x"
sha256 = "{}"
{extra}
[[upstream]]
name = "orders"
builtin = "demo"
[[upstream.tools]]
name = "place_order"
roles = ["position_manager"]
sensitive = true
[[upstream.tools]]
name = "wire_funds"
security_level = 3
[[upstream]]
name = "market"
builtin = "demo"
[[upstream]]
name = "vault"
builtin = "demo"
roles = ["admin"]
"#,
        "0".repeat(64)
    );
    let cfg = crate::config::parse(&text, "t.toml", &|_| None).unwrap();
    Authz::new(&cfg).unwrap()
}

const SEED_004: &str = r#"
[authz]
default_role = "readonly"
[authz.roles.admin]
permissions = ["mcp:*:*", "admin:*:*", "server:*:*", "system:admin"]
[authz.roles.user]
permissions = ["mcp:tools:call", "mcp:resources:read", "mcp:prompts:generate"]
[authz.roles.readonly]
permissions = ["mcp:tools:list", "mcp:resources:list", "mcp:prompts:list"]
[authz.roles.position_manager]
permissions = ["mcp:tools"]
[authz.roles.signal_agent]
permissions = ["mcp:tools"]
[authz.roles.fs]
permissions = ["server:market:*"]
[authz.roles.no_wire]
inherits = ["admin"]
deny = ["tool:execute:orders:wire_funds"]
[authz.roles.no_calls]
inherits = ["admin"]
deny = ["mcp:tools:call"]
"#;

fn who(roles: &[&str]) -> Principal {
    Authenticator::test_principal_as("p", "bearer", roles, &[])
}

const ORDERS: Option<usize> = Some(0);
const MARKET: Option<usize> = Some(1);
const VAULT: Option<usize> = Some(2);

#[test]
fn seed_004_roles() {
    let a = authz(SEED_004);
    let user = who(&["user"]);
    assert!(a
        .check(&user, "tools/call", MARKET, Some(Item::Tool("echo")))
        .is_ok());
    assert!(a
        .check(&user, "prompts/get", MARKET, Some(Item::Prompt("p")))
        .is_ok());
    assert!(matches!(
        a.check(&user, "tools/list", MARKET, None),
        Err(AuthzError::Forbidden(_))
    ));
    // Nobody without roles gets more than the default role's lists.
    let nobody = who(&[]);
    assert!(a.check(&nobody, "tools/list", MARKET, None).is_ok());
    assert!(a
        .check(&nobody, "resources/templates/list", MARKET, None)
        .is_ok());
    assert!(matches!(
        a.check(&nobody, "tools/call", MARKET, Some(Item::Tool("echo"))),
        Err(AuthzError::Forbidden(_))
    ));
    // Roles nobody defined grant nothing; protocol plumbing needs nothing.
    let stranger = who(&["ghost"]);
    assert!(a.check(&stranger, "tools/list", MARKET, None).is_err());
    for m in [
        "initialize",
        "ping",
        "notifications/initialized",
        "server/discover",
    ] {
        assert!(a.check(&stranger, m, MARKET, None).is_ok(), "{m}");
    }
}

#[test]
fn per_server_permission() {
    let a = authz(SEED_004);
    let fs = who(&["fs"]);
    assert!(a
        .check(&fs, "tools/call", MARKET, Some(Item::Tool("echo")))
        .is_ok());
    assert!(a
        .check(
            &fs,
            "resources/read",
            MARKET,
            Some(Item::Resource("demo://x"))
        )
        .is_ok());
    assert!(a
        .check(&fs, "tools/call", ORDERS, Some(Item::Tool("echo")))
        .is_err());
    // Without the upstream known, a server permission cannot apply.
    assert!(a.check(&fs, "tools/list", None, None).is_err());
}

#[test]
fn orders_only_for_position_manager_and_only_signed() {
    let a = authz(SEED_004);
    let place = Some(Item::Tool("place_order"));
    let signal = who(&["signal_agent"]);
    assert!(matches!(
        a.check(&signal, "tools/call", ORDERS, place),
        Err(AuthzError::Hidden {
            why: Hidden::ToolRole,
            ..
        })
    ));
    assert!(!a.visible(&signal, 0, Item::Tool("place_order")));
    assert!(a.visible(&signal, 0, Item::Tool("echo")));
    let pm = who(&["position_manager"]);
    assert!(a.visible(&pm, 0, Item::Tool("place_order")));
    assert!(matches!(
        a.check(&pm, "tools/call", ORDERS, place),
        Err(AuthzError::NeedsSignature(_))
    ));
    let signed = Authenticator::test_principal_as("pm", "jwt+hmac", &["position_manager"], &[]);
    assert!(a.check(&signed, "tools/call", ORDERS, place).is_ok());
}

#[test]
fn security_level_needs_admin() {
    let a = authz(SEED_004);
    let wire = Some(Item::Tool("wire_funds"));
    let pm = who(&["position_manager"]);
    assert!(matches!(
        a.check(&pm, "tools/call", ORDERS, wire),
        Err(AuthzError::Hidden {
            why: Hidden::SecurityLevel,
            ..
        })
    ));
    assert!(a
        .check(&who(&["admin"]), "tools/call", ORDERS, wire)
        .is_ok());
}

#[test]
fn deny_wins() {
    let a = authz(SEED_004);
    let no_wire = who(&["no_wire"]);
    assert!(matches!(
        a.check(
            &no_wire,
            "tools/call",
            ORDERS,
            Some(Item::Tool("wire_funds"))
        ),
        Err(AuthzError::Hidden {
            why: Hidden::Denied,
            ..
        })
    ));
    assert!(!a.visible(&no_wire, 0, Item::Tool("wire_funds")));
    assert!(a
        .check(&no_wire, "tools/call", ORDERS, Some(Item::Tool("echo")))
        .is_ok());
    // Denied together with a role that grants it: still denied.
    let both = who(&["no_calls", "admin"]);
    assert!(matches!(
        a.check(&both, "tools/call", MARKET, Some(Item::Tool("echo"))),
        Err(AuthzError::Forbidden(_))
    ));
    assert!(a.check(&both, "tools/list", MARKET, None).is_ok());
}

#[test]
fn upstream_limited_to_roles() {
    let a = authz(SEED_004);
    let user = who(&["user"]);
    assert!(matches!(
        a.check(&user, "tools/call", VAULT, Some(Item::Tool("echo"))),
        Err(AuthzError::Hidden {
            why: Hidden::UpstreamRole,
            ..
        })
    ));
    assert!(matches!(
        a.check(&who(&["readonly"]), "tools/list", VAULT, None),
        Err(AuthzError::Forbidden(_))
    ));
    assert!(a
        .check(
            &who(&["admin"]),
            "tools/call",
            VAULT,
            Some(Item::Tool("echo"))
        )
        .is_ok());
}

#[test]
fn token_permissions_claim_grants_but_not_to_the_anonymous() {
    let a = authz(SEED_004);
    let p = Authenticator::test_principal_as("t", "jwt", &["ghost"], &["tool:execute", "bad perm"]);
    assert!(a
        .check(&p, "tools/call", MARKET, Some(Item::Tool("echo")))
        .is_ok());
    assert!(a.check(&p, "tools/list", MARKET, None).is_err());
    let anon = Authenticator::test_principal_as("anonymous", "none", &["admin"], &["*"]);
    assert!(a.check(&anon, "tools/list", MARKET, None).is_err());
}

#[test]
fn anonymous_role_applies_only_to_the_unauthenticated() {
    let a = authz(&SEED_004.replace(
        "default_role = \"readonly\"\n[authz.roles.admin]",
        "default_role = \"readonly\"\nanonymous_role = \"user\"\n[authz.roles.admin]",
    ));
    let anon = Authenticator::test_principal("anonymous");
    assert!(a
        .check(&anon, "tools/call", MARKET, Some(Item::Tool("echo")))
        .is_ok());
    assert!(a.check(&anon, "tools/list", MARKET, None).is_err());
}

#[test]
fn operations() {
    assert_eq!(operation("tools/call"), Some(("tools", "call")));
    assert_eq!(
        operation("resources/templates/list"),
        Some(("resources", "list"))
    );
    assert_eq!(operation("logging/setLevel"), Some(("logging", "setLevel")));
    assert_eq!(operation("notifications/cancelled"), None);
    assert_eq!(operation("frobnicate"), Some(("frobnicate", "")));
}
