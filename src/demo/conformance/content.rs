//! The test resources, resource template, prompts and argument completions.

use serde_json::{json, Value};

use super::{invalid_params, RpcError, RpcResult};

/// A 1×1 PNG (one blue pixel), base64.
pub(super) const PNG: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR42mOQ96sEAAF2AOeIcoD6AAAAAElFTkSuQmCC";

/// [`PNG`] as image content.
pub(super) fn image() -> Value {
    json!({"type": "image", "data": PNG, "mimeType": "image/png"})
}

const TEMPLATE: &str = "test://template/{id}/data";

pub(super) fn resources() -> Value {
    json!([
        {"uri": "test://static-text", "name": "static-text", "title": "Static text",
         "description": "A fixed text resource.", "mimeType": "text/plain"},
        {"uri": "test://static-binary", "name": "static-binary", "title": "Static binary",
         "description": "A fixed binary resource (a PNG image).", "mimeType": "image/png"},
        {"uri": "test://watched-resource", "name": "watched-resource", "title": "Watched resource",
         "description": "A resource clients can subscribe to.", "mimeType": "text/plain"}
    ])
}

pub(super) fn resource_templates() -> Value {
    json!([{
        "uriTemplate": TEMPLATE, "name": "template-data", "title": "Data by id",
        "description": "JSON data for any id.", "mimeType": "application/json"
    }])
}

/// The `{id}` of a URI matching [`TEMPLATE`].
fn template_id(uri: &str) -> Option<&str> {
    let id = uri
        .strip_prefix("test://template/")?
        .strip_suffix("/data")?;
    (!id.is_empty() && !id.contains('/')).then_some(id)
}

/// `resources/read`.
pub(super) fn read(params: &Value) -> RpcResult {
    let uri = params
        .get("uri")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid_params("uri is required"))?;
    let one = |mime: &str, key: &str, value: Value| {
        Ok(json!({"contents": [{"uri": uri, "mimeType": mime, key: value}]}))
    };
    match uri {
        "test://static-text" => one(
            "text/plain",
            "text",
            "This is the content of the static text resource.".into(),
        ),
        "test://static-binary" => one("image/png", "blob", PNG.into()),
        "test://watched-resource" => one("text/plain", "text", "Watched resource content.".into()),
        _ => match template_id(uri) {
            Some(id) => {
                let data =
                    json!({"id": id, "templateTest": true, "data": format!("Data for ID: {id}")});
                one("application/json", "text", data.to_string().into())
            }
            None => Err(RpcError(
                -32002,
                "Resource not found".into(),
                Some(json!({"uri": uri})),
            )),
        },
    }
}

fn arg(name: &str, description: &str) -> Value {
    json!({"name": name, "description": description, "required": true})
}

pub(super) fn prompts() -> Value {
    json!([
        {"name": "test_simple_prompt", "description": "A prompt without arguments."},
        {"name": "test_prompt_with_arguments", "description": "A prompt with two arguments.",
         "arguments": [arg("arg1", "First test argument"), arg("arg2", "Second test argument")]},
        {"name": "test_prompt_with_embedded_resource", "description": "A prompt embedding a resource.",
         "arguments": [arg("resourceUri", "URI of the resource to embed")]},
        {"name": "test_prompt_with_image", "description": "A prompt with an image."}
    ])
}

fn user(content: Value) -> Value {
    json!({"role": "user", "content": content})
}

fn user_text(s: &str) -> Value {
    user(json!({"type": "text", "text": s}))
}

/// `prompts/get`.
pub(super) fn prompt(params: &Value) -> RpcResult {
    let name = params.get("name").and_then(Value::as_str).unwrap_or("");
    let args = params.get("arguments");
    let arg = |key: &str| {
        args.and_then(|a| a.get(key))
            .and_then(Value::as_str)
            .ok_or_else(|| invalid_params(format!("argument {key} is required")))
    };
    let messages = match name {
        "test_simple_prompt" => vec![user_text("This is a simple prompt for testing.")],
        "test_prompt_with_arguments" => {
            let (a, b) = (arg("arg1")?, arg("arg2")?);
            vec![user_text(&format!(
                "Prompt with arguments: arg1='{a}', arg2='{b}'"
            ))]
        }
        "test_prompt_with_embedded_resource" => vec![
            user(json!({"type": "resource", "resource": {
                "uri": arg("resourceUri")?, "mimeType": "text/plain",
                "text": "Embedded resource content for testing."
            }})),
            user_text("Please process the embedded resource above."),
        ],
        "test_prompt_with_image" => {
            vec![user(image()), user_text("Please analyze the image above.")]
        }
        _ => return Err(invalid_params(format!("unknown prompt {name:?}"))),
    };
    Ok(json!({"messages": messages}))
}

/// `completion/complete`: suggestions for the arguments of `test_prompt_with_arguments` and the
/// `{id}` of the resource template, filtered by the prefix typed so far.
pub(super) fn complete(params: &Value) -> RpcResult {
    let kind = params.pointer("/ref/type").and_then(Value::as_str);
    let target = match kind {
        Some("ref/prompt") => params.pointer("/ref/name"),
        Some("ref/resource") => params.pointer("/ref/uri"),
        _ => None,
    }
    .and_then(Value::as_str);
    let argument = params.pointer("/argument/name").and_then(Value::as_str);
    let typed = params
        .pointer("/argument/value")
        .and_then(Value::as_str)
        .unwrap_or("");
    let candidates: &[&str] = match (target, argument) {
        (Some("test_prompt_with_arguments"), Some("arg1" | "arg2")) => {
            &["test", "testValue1", "testValue2", "paris", "park"]
        }
        (Some(TEMPLATE), Some("id")) => &["1", "2", "3", "123"],
        (Some("test_prompt_with_arguments" | TEMPLATE), _) => &[],
        _ => return Err(invalid_params("unknown completion reference")),
    };
    let values: Vec<&str> = candidates
        .iter()
        .copied()
        .filter(|c| c.starts_with(typed))
        .collect();
    Ok(json!({"completion": {"values": values, "total": values.len(), "hasMore": false}}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_reads_substitute_the_id() {
        let r = read(&json!({"uri": "test://template/123/data"})).unwrap();
        let text = r["contents"][0]["text"].as_str().unwrap();
        assert!(text.contains("\"id\":\"123\""), "{text}");
        assert!(read(&json!({"uri": "test://template//data"})).is_err());
        let e = read(&json!({"uri": "test://nope"})).unwrap_err();
        assert_eq!(e.2, Some(json!({"uri": "test://nope"})));
    }

    #[test]
    fn completions_filter_by_prefix() {
        let p = json!({"ref": {"type": "ref/prompt", "name": "test_prompt_with_arguments"},
                       "argument": {"name": "arg1", "value": "test"}});
        let v = complete(&p).unwrap();
        assert_eq!(
            v["completion"]["values"],
            json!(["test", "testValue1", "testValue2"])
        );
        let p = json!({"ref": {"type": "ref/prompt", "name": "nope"}, "argument": {"name": "a", "value": ""}});
        assert!(complete(&p).is_err());
    }

    #[test]
    fn prompts_need_their_arguments() {
        let p = json!({"name": "test_prompt_with_arguments", "arguments": {"arg1": "x"}});
        assert_eq!(prompt(&p).unwrap_err().0, -32602);
    }
}
