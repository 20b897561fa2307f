//! Everything checked about a `tools/call` once its tool's definition is known, in order, on
//! the hub and on proxied routes alike:
//!
//! 1. the tool exists in the upstream's list (MCP-007);
//! 2. tool pinning: its definition is the approved one and not withheld (MCP-007);
//! 3. the policies, which see the definition's annotations (MCP-002);
//! 4. the arguments against its `inputSchema` (MCP-001), then the finance rules (MCP-001 /
//!    MCP-015);
//! 5. URL arguments through the SSRF guard (MCP-016);
//!
//! and what the call then carries: the checks on its result (output schema, secrets) and its
//! own time limit.

use std::sync::Arc;

use serde_json::Value;

use super::conn::{Conn, ListKind};
use super::pool::Owner;
use super::relay::Guards;
use super::{wire, Hub, HubError};
use crate::audit::Text;
use crate::controls::authz::Access;
use crate::controls::output::{Check, Context};
use crate::controls::pinning::Verdict;
use crate::controls::validate::{self, ValidateError};
use crate::proto::Envelope;

/// A call that passed every input check.
pub(crate) struct Prepared<'t> {
    /// The tool's definition.
    pub tool: &'t Value,
    /// The parsed arguments.
    pub args: Value,
    /// What the call carries.
    pub guards: Guards,
}

/// The server's `initialize.instructions` (part of what a pin covers).
pub(crate) fn instructions(conn: &Conn) -> Option<&str> {
    conn.init.get("instructions").and_then(Value::as_str)
}

impl Hub {
    /// Checks a call to `name` on upstream `u`, whose list (as this caller's upstream session
    /// sees it) is `tools`.
    #[allow(clippy::too_many_arguments)] // the call, who makes it, and where it is going
    pub(crate) async fn prepare_call<'t>(
        &self,
        u: usize,
        conn: &Conn,
        tools: &'t Arc<Vec<Value>>,
        name: &str,
        env: &Envelope,
        access: &Access<'_>,
        request_id: &str,
    ) -> Result<Prepared<'t>, HubError> {
        let tool = validate::find_tool(tools, name)
            .ok_or_else(|| ValidateError::UnknownTool(name.to_owned()))?;
        if let Some(verdicts) = self.pins.verdicts(u, tools, instructions(conn)) {
            match verdicts.get(name).copied() {
                Some(Verdict::Pass) => {}
                other => {
                    return Err(ValidateError::Withheld {
                        tool: name.to_owned(),
                        reason: why_withheld(other),
                    }
                    .into())
                }
            }
        }
        // The policies see the tool's definition (its annotations) before anything else.
        access.check_call(u, name, tool)?;
        let raw = env.params().and_then(|p| wire::member(p, "arguments"));
        let args = self.schemas.check(u, tools, tool, raw)?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        self.rules.check(u, name, raw, now)?;
        let meta = access.authz.tool_meta(u, name);
        self.guard_urls(tool, &args, meta.map_or(&[][..], |m| &m.url_args))
            .await?;
        let guards = Guards {
            output: self.output_check(u, tools, name, tool, access, request_id)?,
            timeout: meta.and_then(|m| m.timeout),
        };
        Ok(Prepared { tool, args, guards })
    }

    /// [`Hub::prepare_call`] for a proxied (byte-forwarding) route: the definition comes from
    /// the list upstream `u` gives the gateway's own upstream session (kept fresh by its
    /// `list_changed` notifications).
    pub async fn prepare_proxied_call(
        &self,
        u: usize,
        name: &str,
        env: &Envelope,
        access: &Access<'_>,
        request_id: &str,
    ) -> Result<Guards, HubError> {
        let conn = self.conn_for(u, Owner::Shared, b"{}").await?;
        let tools = conn.list(ListKind::Tools).await?;
        let p = self
            .prepare_call(u, &conn, &tools, name, env, access, request_id)
            .await?;
        Ok(p.guards)
    }

    /// The server instructions of upstream `u`, as the gateway's own session got them (a
    /// proxied route's list is judged with them).
    pub async fn proxied_instructions(&self, u: usize) -> Result<Option<String>, HubError> {
        let conn = self.conn_for(u, Owner::Shared, b"{}").await?;
        Ok(instructions(&conn).map(str::to_owned))
    }

    /// Forgets the tool list of the gateway's own session with upstream `u`: a client of a
    /// proxied route was shown a definition that differs from its pin, so the list calls are
    /// checked against is fetched again (an upstream may change a tool without announcing it).
    pub async fn forget_proxied_tools(&self, u: usize) {
        if let Ok(conn) = self.conn_for(u, Owner::Shared, b"{}").await {
            conn.invalidate("notifications/tools/list_changed");
        }
    }

    /// The tool pins.
    pub fn pins(&self) -> &crate::controls::pinning::Pins {
        &self.pins
    }

    /// The SSRF guard on a call's URL arguments (by schema `format: uri` and config).
    async fn guard_urls(
        &self,
        tool: &Value,
        args: &Value,
        configured: &[String],
    ) -> Result<(), HubError> {
        let names = crate::controls::ssrf::url_args(tool, configured);
        if names.is_empty() {
            return Ok(());
        }
        crate::controls::ssrf::check_args(&self.ssrf, &names, args)
            .await
            .map_err(|e| HubError::Validate(e.into()))
    }

    /// The checks on the result of a call to upstream `u`'s tool `name` (definition `tool`),
    /// or `None` when there is nothing to check.
    fn output_check(
        &self,
        u: usize,
        tools: &Arc<Vec<Value>>,
        name: &str,
        tool: &Value,
        access: &Access<'_>,
        request_id: &str,
    ) -> Result<Option<Check>, HubError> {
        let schema = self.schemas.output(u, tools, tool)?;
        let allowed = access
            .authz
            .tool_meta(u, name)
            .map_or(0, |m| m.allow_secrets);
        let check = Check::new(
            name,
            schema,
            self.secret_mode,
            allowed,
            Context {
                audit: self.audit.clone(),
                request_id: Text::copy(request_id),
                principal: Text::copy(access.who.id()),
                upstream: Text::copy(&self.ups[u].name),
            },
        );
        Ok(check.is_active().then_some(check))
    }
}

/// The audit reason of a withheld tool (one missing from the verdicts is withheld: it was
/// never judged).
fn why_withheld(v: Option<Verdict>) -> &'static str {
    match v {
        Some(Verdict::Withheld(w)) => w.reason(),
        _ => "tool_unapproved",
    }
}
