use super::*;

const TOOL_ACCESS: &str = include_str!("../../../examples/policies/tool_access.rego");
const ADMIN_ACCESS: &str = include_str!("../../../examples/policies/admin_access.rego");

fn policy(name: &str, text: &str, actions: Option<&[&str]>) -> PolicyConfig {
    let mut e = Engine::new();
    let package =
        crate::config::compile_policy(&mut e, name.as_ref(), text, false).expect("policy compiles");
    PolicyConfig {
        file: name.into(),
        package,
        text: text.to_owned(),
        rego_v1: false,
        actions: actions.map(|a| a.iter().map(|s| s.to_string()).collect()),
    }
}

fn seed() -> Policies {
    Policies::new(&[
        policy("tool_access.rego", TOOL_ACCESS, Some(&["execute"])),
        policy("admin_access.rego", ADMIN_ACCESS, Some(&["admin"])),
    ])
    .expect("seed policies load")
}

fn input<'a>(roles: &[&'a str], perms: &[&'a str], method: &'a str, level: u8) -> Input<'a> {
    Input {
        user: "alice",
        roles: roles.to_vec(),
        permissions: perms.to_vec(),
        auth_method: "jwt",
        method,
        upstream: Some("orders"),
        tool: (method == "tools/call").then_some(ToolFacts {
            name: "place_order",
            security_level: level,
            annotations: None,
        }),
        resource: "tool:orders:place_order".into(),
        ip: Some([127, 0, 0, 1].into()),
        transport: "http",
    }
}

fn denied_by(r: Result<(), PolicyError>) -> String {
    match r {
        Err(PolicyError::Denied { package, why }) => format!("{package}: {why}"),
        other => panic!("expected a denial, got {other:?}"),
    }
}

#[test]
fn seed_tool_access_allows_admins_and_users_with_the_permission() {
    let p = seed();
    assert_eq!(p.decide(&input(&["admin"], &[], "tools/call", 0)), Ok(()));
    assert_eq!(
        p.decide(&input(&["user"], &["tool:execute"], "tools/call", 2)),
        Ok(())
    );
    assert_eq!(
        denied_by(p.decide(&input(&["user"], &["tool:read"], "tools/call", 0))),
        "tool_access: allow undefined"
    );
    assert_eq!(
        denied_by(p.decide(&input(&["viewer"], &["tool:execute"], "tools/call", 0))),
        "tool_access: allow undefined"
    );
}

#[test]
fn seed_tool_access_denies_high_security_tools_to_non_admins() {
    let p = seed();
    assert_eq!(
        denied_by(p.decide(&input(&["user"], &["tool:execute"], "tools/call", 3))),
        "tool_access: deny"
    );
    assert_eq!(p.decide(&input(&["admin"], &[], "tools/call", 9)), Ok(()));
    // As written, `input.user.roles[_] != "admin"` holds when ANY role is not admin: an admin
    // who also holds `user` is denied. The gateway evaluates the seed's text as it says.
    assert_eq!(
        denied_by(p.decide(&input(&["admin", "user"], &[], "tools/call", 3))),
        "tool_access: deny"
    );
}

#[test]
fn seed_admin_access_decides_admin_actions_only() {
    let p = seed();
    assert_eq!(
        p.decide(&input(&["admin"], &[], "logging/setLevel", 0)),
        Ok(())
    );
    assert_eq!(
        denied_by(p.decide(&input(&["user"], &["system:admin"], "logging/setLevel", 0))),
        "admin_access: deny"
    );
    // Neither policy decides reads: the roles alone do.
    assert_eq!(p.decide(&input(&["user"], &[], "tools/list", 0)), Ok(()));
}

#[test]
fn a_policy_for_every_action_denies_what_it_does_not_allow() {
    let p = Policies::new(&[policy("tool_access.rego", TOOL_ACCESS, None)]).unwrap();
    assert_eq!(
        denied_by(p.decide(&input(&["admin"], &[], "tools/list", 0))),
        "tool_access: allow undefined"
    );
}

#[test]
fn an_evaluation_error_denies() {
    // A complete rule with two values at once is an evaluation error (one role: fine).
    let conflict = "package broken\nallow = v { v := input.user.roles[_] == \"admin\" }\n";
    let p = Policies::new(&[policy("broken.rego", conflict, None)]).unwrap();
    assert_eq!(p.decide(&input(&["admin"], &[], "tools/call", 0)), Ok(()));
    let r = p.decide(&input(&["admin", "user"], &[], "tools/call", 0));
    assert!(
        matches!(&r, Err(PolicyError::Failed { package, .. }) if package == "broken"),
        "{r:?}"
    );
}

#[test]
fn a_non_boolean_allow_denies_and_a_deny_set_with_members_denies() {
    let text = "package odd\nallow = \"yes\"\n";
    let p = Policies::new(&[policy("odd.rego", text, None)]).unwrap();
    assert!(denied_by(p.decide(&input(&[], &[], "tools/call", 0))).starts_with("odd: allow is"));
    let text = "package msgs\nallow = true\ndeny[msg] { input.user.id == \"alice\"; msg := \"no alice\" }\n";
    let p = Policies::new(&[policy("msgs.rego", text, None)]).unwrap();
    assert!(denied_by(p.decide(&input(&[], &[], "tools/call", 0))).contains("no alice"));
    let mut bob = input(&[], &[], "tools/call", 0);
    bob.user = "bob";
    assert_eq!(p.decide(&bob), Ok(()));
}

#[test]
fn the_input_document_has_the_documented_fields() {
    let text = r#"package facts
allow {
    input.user.id == "alice"
    input.user.roles == ["user"]
    input.user.permissions == ["tool:execute"]
    input.user.auth_method == "jwt"
    input.action == "execute"
    input.tool.name == "place_order"
    input.tool.upstream == "orders"
    input.tool.security_level == 1
    input.tool.annotations.destructiveHint == true
    input.resource == "tool:orders:place_order"
    input.request.ip == "127.0.0.1"
    input.request.transport == "http"
    input.request.method == "tools/call"
}
"#;
    let p = Policies::new(&[policy("facts.rego", text, None)]).unwrap();
    let ann = serde_json::json!({"destructiveHint": true});
    let mut i = input(&["user"], &["tool:execute"], "tools/call", 1);
    i.tool = Some(ToolFacts {
        name: "place_order",
        security_level: 1,
        annotations: Some(&ann),
    });
    assert_eq!(p.decide(&i), Ok(()));
    i.user = "mallory";
    assert!(p.decide(&i).is_err());
}

#[test]
fn engines_are_reused_across_decisions() {
    let p = seed();
    for _ in 0..3 {
        assert_eq!(p.decide(&input(&["admin"], &[], "tools/call", 0)), Ok(()));
    }
    assert_eq!(p.idle.lock().unwrap().len(), 1);
}

#[test]
fn rule_heads_are_found_in_the_text() {
    assert!(declares("package x\ndeny {\n true\n}", "deny"));
    assert!(declares("package x\n  default deny := false", "deny"));
    assert!(declares("package x\ndeny[msg] { msg := 1 }", "deny"));
    assert!(!declares(
        "package x\ndenylist := []\n# deny nothing",
        "deny"
    ));
}

#[test]
fn actions_map_methods_as_documented() {
    assert_eq!(action("tools/call"), "execute");
    assert_eq!(action("tools/list"), "read");
    assert_eq!(action("resources/read"), "read");
    assert_eq!(action("prompts/get"), "read");
    assert_eq!(action("logging/setLevel"), "admin");
    assert_eq!(action("resources/subscribe"), "subscribe");
    assert_eq!(action("completion/complete"), "complete");
    assert_eq!(action("tasks/get"), "task");
    for a in ["execute", "read", "subscribe", "complete", "admin", "task"] {
        assert!(crate::config::POLICY_ACTIONS.contains(&a));
    }
}
