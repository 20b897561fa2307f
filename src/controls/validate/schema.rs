//! Tool input schemas, compiled once per definition and shared.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use jsonschema::Validator;
use serde_json::Value;

use super::ValidateError;

struct Compiled {
    /// The tool list the definition was last seen in, and the schema's address inside it.
    /// While this holds the list, nothing else can live at that address and the list cannot
    /// change, so a call judged against the same list is recognised without comparing schemas.
    seen: (Arc<Vec<Value>>, usize),
    /// The schema it was compiled from: a changed definition (after `list_changed`) compiles
    /// again.
    source: Value,
    validator: Result<Arc<Validator>, Arc<str>>,
}

/// Compiled input schemas per upstream and tool.
pub struct Schemas {
    by_upstream: Vec<RwLock<HashMap<Box<str>, Compiled>>>,
}

impl std::fmt::Debug for Schemas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Schemas").finish_non_exhaustive()
    }
}

impl Schemas {
    /// An empty cache for `upstreams` upstreams.
    pub fn new(upstreams: usize) -> Schemas {
        Schemas {
            by_upstream: (0..upstreams).map(|_| RwLock::default()).collect(),
        }
    }

    /// Validates a call's raw `arguments` (absent: `{}`) against `tool`'s `inputSchema`, and
    /// returns them parsed. `tool` is an entry of `list`, the upstream's tool list.
    pub fn check(
        &self,
        u: usize,
        list: &Arc<Vec<Value>>,
        tool: &Value,
        arguments: Option<&[u8]>,
    ) -> Result<Value, ValidateError> {
        let name = tool.get("name").and_then(Value::as_str).unwrap_or_default();
        let schema = tool.get("inputSchema").unwrap_or(&Value::Null);
        let validator = self.compiled(u, list, name, name, schema)?;
        let args: Value = match arguments {
            // The envelope scan already validated this JSON.
            Some(raw) => serde_json::from_slice(raw).map_err(|_| ValidateError::NotAnObject)?,
            None => Value::Object(Default::default()),
        };
        if !args.is_object() {
            return Err(ValidateError::NotAnObject);
        }
        validator
            .validate(&args)
            .map_err(|e| ValidateError::Arguments {
                path: e.instance_path().to_string(),
                detail: e.to_string(),
            })?;
        Ok(args)
    }

    /// The compiled `outputSchema` of `tool`, if it declares one (MCP-009). One that does not
    /// compile refuses calls, as an input schema does: the result could not be checked.
    pub fn output(
        &self,
        u: usize,
        list: &Arc<Vec<Value>>,
        tool: &Value,
    ) -> Result<Option<Arc<Validator>>, ValidateError> {
        let Some(schema) = tool.get("outputSchema") else {
            return Ok(None);
        };
        let name = tool.get("name").and_then(Value::as_str).unwrap_or_default();
        // Its own cache entry: NUL cannot occur in a valid tool name.
        let key = format!("{name}\0output");
        self.compiled(u, list, &key, name, schema).map(Some)
    }

    fn compiled(
        &self,
        u: usize,
        list: &Arc<Vec<Value>>,
        key: &str,
        name: &str,
        schema: &Value,
    ) -> Result<Arc<Validator>, ValidateError> {
        let slot = self
            .by_upstream
            .get(u)
            .ok_or_else(|| ValidateError::UnknownTool(name.to_owned()))?;
        let at = std::ptr::from_ref(schema) as usize;
        // A hit, and whether its entry should take this list as the one it remembers.
        let found = {
            let map = slot.read().unwrap_or_else(|p| p.into_inner());
            map.get(key).and_then(|c| {
                if Arc::ptr_eq(&c.seen.0, list) && c.seen.1 == at {
                    Some((c.validator.clone(), false))
                } else {
                    // The same definition in another list. Adopted only once the remembered
                    // list is nobody else's (replaced upstream): two lists in use at once (one
                    // per isolated session) must not take turns at the write lock.
                    (&c.source == schema)
                        .then(|| (c.validator.clone(), Arc::strong_count(&c.seen.0) == 1))
                }
            })
        };
        let validator = match found {
            Some((v, adopt)) => {
                if adopt {
                    let mut map = slot.write().unwrap_or_else(|p| p.into_inner());
                    if let Some(c) = map.get_mut(key).filter(|c| &c.source == schema) {
                        c.seen = (list.clone(), at);
                    }
                }
                v
            }
            None => {
                let v = compile(schema);
                if let Err(why) = &v {
                    tracing::error!(target: "palisade::validate", tool = name, error = %why, "tool schema does not compile: calls to it are refused");
                }
                slot.write().unwrap_or_else(|p| p.into_inner()).insert(
                    key.into(),
                    Compiled {
                        seen: (list.clone(), at),
                        source: schema.clone(),
                        validator: v.clone(),
                    },
                );
                v
            }
        };
        validator.map_err(|why| ValidateError::BrokenSchema {
            tool: name.to_owned(),
            why: why.to_string(),
        })
    }
}

/// Compiles a schema; only local references resolve (no network or file access).
fn compile(schema: &Value) -> Result<Arc<Validator>, Arc<str>> {
    if !schema.is_object() {
        return Err(Arc::from("schema is missing or not an object"));
    }
    jsonschema::options()
        .build(schema)
        .map(Arc::new)
        .map_err(|e| Arc::from(e.to_string()))
}
