//! Responses tools → Anthropic tools (the *Tools* section of [`super`]'s docs): the client's
//! `function`, `custom`, `namespace` and web search tools flattened into one Anthropic list,
//! with the way back from an Anthropic tool name to the client's tool, and `tool_choice` read
//! into the shared [`Choice`].

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use crate::openai::content;
use crate::openai::draft::Choice;
use crate::openai::TranslateError;

pub(super) const WEB_SEARCH_TYPES: &[&str] = &[
    "web_search",
    "web_search_preview",
    "web_search_2025_08_26",
    "web_search_preview_2025_03_11",
];

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum ToolKind {
    Function,
    Custom,
    WebSearch,
}

/// How the client knows a tool we declared upstream.
#[derive(Debug, Clone)]
pub(super) struct ClientTool {
    pub namespace: Option<String>,
    pub name: String,
    pub kind: ToolKind,
}

/// The client's tools, flattened for Anthropic, with the way back.
#[derive(Debug, Default)]
pub(super) struct ToolTable {
    /// The Anthropic `tools`, in declaration order.
    pub anthropic: Vec<Value>,
    /// Anthropic tool name → the client's tool.
    by_flat: BTreeMap<String, ClientTool>,
    /// (namespace, name) → Anthropic tool name.
    by_qualified: BTreeMap<(String, String), String>,
}

/// Codex's flat name for a namespaced tool.
fn canonical_name(namespace: &str, name: &str) -> String {
    format!(
        "{}__{}",
        namespace.trim_end_matches('_'),
        name.trim_start_matches('_')
    )
}

impl ToolTable {
    pub fn build(tools: Option<&Value>) -> Result<ToolTable, TranslateError> {
        let list = match tools {
            None | Some(Value::Null) => return Ok(ToolTable::default()),
            Some(Value::Array(list)) => list,
            Some(_) => return Err(TranslateError::new("tools", "`tools` must be a list")),
        };
        // Top-level names first, so a flattened name never takes one of them.
        let mut taken = BTreeSet::new();
        for (i, tool) in list.iter().enumerate() {
            let p = format!("tools[{i}]");
            let kind = tool_type(tool, &p)?;
            let name = match kind {
                "function" | "custom" => required_str(tool, "name", &p)?,
                k if WEB_SEARCH_TYPES.contains(&k) => "web_search",
                _ => continue,
            };
            if !taken.insert(name.to_string()) {
                return Err(TranslateError::new(
                    format!("{p}.name"),
                    format!("two tools are named `{name}`"),
                ));
            }
        }
        let mut table = ToolTable::default();
        for (i, tool) in list.iter().enumerate() {
            let p = format!("tools[{i}]");
            match tool_type(tool, &p)? {
                "function" => table.add(tool, None, required_str(tool, "name", &p)?, false, &p)?,
                "custom" => table.add(tool, None, required_str(tool, "name", &p)?, true, &p)?,
                "namespace" => {
                    let namespace = required_str(tool, "name", &p)?;
                    let Some(children) = tool.get("tools").and_then(Value::as_array) else {
                        return Err(TranslateError::new(format!("{p}.tools"), "`tools` must be a list"));
                    };
                    for (j, child) in children.iter().enumerate() {
                        let cp = format!("{p}.tools[{j}]");
                        let custom = match tool_type(child, &cp)? {
                            "function" => false,
                            "custom" => true,
                            other => {
                                return Err(TranslateError::new(
                                    format!("{cp}.type"),
                                    format!("`{other}` tools are not supported inside a namespace"),
                                ))
                            }
                        };
                        let name = required_str(child, "name", &cp)?;
                        let flat = unique(canonical_name(namespace, name), &mut taken);
                        table
                            .by_qualified
                            .insert((namespace.to_string(), name.to_string()), flat.clone());
                        table.add(child, Some(namespace), &flat, custom, &cp)?;
                    }
                }
                k if WEB_SEARCH_TYPES.contains(&k) => table.add_web_search(tool),
                // Deferred tools are declared directly, so there is nothing to search for.
                "tool_search" => {}
                other => {
                    return Err(TranslateError::new(
                        format!("{p}.type"),
                        format!("the hosted tool `{other}` is not supported (only function, custom, namespace and web_search tools are)"),
                    ))
                }
            }
        }
        Ok(table)
    }

    /// Declares a function or custom tool under the Anthropic name `flat`.
    fn add(
        &mut self,
        tool: &Value,
        namespace: Option<&str>,
        flat: &str,
        custom: bool,
        p: &str,
    ) -> Result<(), TranslateError> {
        let mut description = tool
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let schema = if custom {
            if let Some(f) = tool.get("format").filter(|f| f["type"] == "grammar") {
                let syntax = f["syntax"].as_str().unwrap_or("lark");
                let definition = f["definition"].as_str().unwrap_or("");
                description.push_str(&format!(
                    "\n\nThe `input` string must follow this {syntax} grammar:\n```\n{definition}\n```"
                ));
            }
            json!({
                "type": "object",
                "properties": {"input": {"type": "string", "description": "The raw input for this tool: free-form text, not JSON."}},
                "required": ["input"],
                "additionalProperties": false
            })
        } else {
            content::input_schema(tool.get("parameters"), format!("{p}.parameters"))?
        };
        let mut out = json!({"name": flat, "input_schema": schema});
        let description = description.trim_start();
        if !description.is_empty() {
            out["description"] = json!(description);
        }
        self.anthropic.push(out);
        let name = tool["name"].as_str().unwrap_or(flat).to_string();
        let kind = if custom {
            ToolKind::Custom
        } else {
            ToolKind::Function
        };
        self.by_flat.insert(
            flat.to_string(),
            ClientTool {
                namespace: namespace.map(str::to_string),
                name,
                kind,
            },
        );
        Ok(())
    }

    /// OpenAI's hosted web search → Anthropic's server-side web search. A client that declares
    /// it with `external_web_access: false` (Codex's default) has ruled live searching out, so
    /// the tool is left out rather than widened into a live search.
    fn add_web_search(&mut self, tool: &Value) {
        if tool.get("external_web_access") == Some(&Value::Bool(false)) {
            return;
        }
        let max_uses = match tool["search_context_size"].as_str() {
            Some("low") => 3,
            Some("high") => 10,
            _ => 5,
        };
        let mut out =
            json!({"type": "web_search_20250305", "name": "web_search", "max_uses": max_uses});
        // Anthropic refuses an empty domain list.
        if let Some(d) = tool
            .pointer("/filters/allowed_domains")
            .and_then(Value::as_array)
            .filter(|d| !d.is_empty())
        {
            out["allowed_domains"] = json!(d);
        }
        if let Some(loc) = tool.get("user_location").and_then(Value::as_object) {
            let mut l = json!({"type": "approximate"});
            for k in ["city", "region", "country", "timezone"] {
                if let Some(v) = loc.get(k).and_then(Value::as_str) {
                    l[k] = json!(v);
                }
            }
            out["user_location"] = l;
        }
        self.anthropic.push(out);
        self.by_flat.insert(
            "web_search".into(),
            ClientTool {
                namespace: None,
                name: "web_search".into(),
                kind: ToolKind::WebSearch,
            },
        );
    }

    /// The Anthropic name of a tool the client calls `name` (in `namespace`).
    pub fn flat_name(&self, namespace: Option<&str>, name: &str) -> String {
        match namespace {
            Some(ns) => self
                .by_qualified
                .get(&(ns.to_string(), name.to_string()))
                .cloned()
                .unwrap_or_else(|| canonical_name(ns, name)),
            None => name.to_string(),
        }
    }

    /// The client's view of an Anthropic tool name (unknown names pass as functions).
    pub fn client_tool(&self, flat: &str) -> ClientTool {
        self.by_flat.get(flat).cloned().unwrap_or(ClientTool {
            namespace: None,
            name: flat.to_string(),
            kind: ToolKind::Function,
        })
    }
}

fn tool_type<'a>(tool: &'a Value, p: &str) -> Result<&'a str, TranslateError> {
    tool.get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| TranslateError::new(format!("{p}.type"), "each tool needs a `type`"))
}

fn required_str<'a>(v: &'a Value, key: &str, p: &str) -> Result<&'a str, TranslateError> {
    match v.get(key).and_then(Value::as_str) {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(TranslateError::new(
            format!("{p}.{key}"),
            format!("`{key}` is required"),
        )),
    }
}

/// `base`, or `base_2`, `base_3`, … whichever is free first; marks it taken.
fn unique(base: String, taken: &mut BTreeSet<String>) -> String {
    let mut name = base.clone();
    let mut n = 2;
    while taken.contains(&name) {
        name = format!("{base}_{n}");
        n += 1;
    }
    taken.insert(name.clone());
    name
}

/// `tool_choice` as the client wrote it → a [`Choice`] (converted, with
/// `parallel_tool_calls`, by [`crate::openai::draft`]).
pub(super) fn tool_choice(
    choice: Option<&Value>,
    tools: &ToolTable,
) -> Result<Option<Choice>, TranslateError> {
    let bad = || {
        TranslateError::new(
            "tool_choice",
            "`tool_choice` must be auto, none, required or {\"type\":\"function\",\"name\":…}",
        )
    };
    let named = |name: String, asked: &str, param: &str| Choice::Tool {
        name,
        asked: asked.to_string(),
        param: param.to_string(),
    };
    match choice {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Choice::mode(s).map(Some).ok_or_else(bad),
        Some(Value::Object(o)) => match o.get("type").and_then(Value::as_str) {
            Some(t @ ("auto" | "none" | "required")) => Ok(Choice::mode(t)),
            Some("function" | "custom") => {
                let Some(name) = o.get("name").and_then(Value::as_str) else {
                    return Err(TranslateError::new(
                        "tool_choice.name",
                        "`tool_choice.name` is required",
                    ));
                };
                let namespace = o.get("namespace").and_then(Value::as_str);
                let flat = tools.flat_name(namespace, name);
                Ok(Some(named(flat, name, "tool_choice.name")))
            }
            Some(t) if WEB_SEARCH_TYPES.contains(&t) => Ok(Some(named(
                "web_search".into(),
                "web_search",
                "tool_choice",
            ))),
            Some(t) => Err(TranslateError::new(
                "tool_choice.type",
                format!("tool_choice of type `{t}` is not supported"),
            )),
            None => Err(bad()),
        },
        Some(_) => Err(bad()),
    }
}
