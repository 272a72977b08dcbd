//! The Anthropic request both OpenAI doors assemble, and the rules that apply to it as a whole:
//! each door reads its own request shape into a [`Draft`] (messages, tools, the choices the
//! client made), and [`Draft::finish`] applies the rules both share, so they are written once:
//!
//! - tool choice: `auto` → Anthropic's default (nothing sent), `none` → `none`, `required` →
//!   `any`, a named tool → `tool` (it must be declared); `parallel_tool_calls: false` →
//!   `disable_parallel_tool_use` (on an explicit `auto` when the client chose nothing; never
//!   on `none`, where there are no calls to limit). Without tools, `auto`/`none` send nothing
//!   and a forced call is a 400;
//! - reasoning: [`super::reasoning::plan`] (thinking, effort, `max_tokens`);
//! - the answer's format: JSON mode (`json_object`) becomes a last system block,
//!   [`JSON_OBJECT_INSTRUCTION`] (Anthropic has no schema-less JSON mode); a JSON schema
//!   becomes `output_config.format` (structured outputs);
//! - sampling: `temperature` (0..2 accepted, clamped to Anthropic's 0..1: values ≤ 1 mean the
//!   same in both), `top_p` only when no temperature is given (newer models refuse both at
//!   once), `top_k` passed through; all of them dropped while thinking is on (Anthropic then
//!   accepts only the defaults);
//! - betas: `structured-outputs-2025-12-15` for strict tools or a schema, then
//!   `effort-2025-11-24` for an effort.

use serde_json::{json, Map, Value};

use super::body::{Body, Message};
use super::reasoning::{self, Ask, ReasoningEffort};
use super::{TranslateError, Translated};
use crate::anthropic::betas;

/// The system block that stands in for JSON mode.
pub const JSON_OBJECT_INSTRUCTION: &str = "Respond with a single valid JSON object and nothing \
     else: no text before or after it and no Markdown code fences.";

/// The format the client asked the answer in.
#[derive(Debug, Clone, PartialEq)]
pub enum Format {
    Text,
    /// Any one JSON object.
    JsonObject,
    /// JSON following this schema.
    JsonSchema(Value),
}

/// A tool choice, as the door read it.
#[derive(Debug, Clone, PartialEq)]
pub enum Choice {
    Auto,
    None,
    Required,
    /// One tool: its Anthropic `name`, the name the client gave (for the 400) and the
    /// parameter that named it.
    Tool {
        name: String,
        asked: String,
        param: String,
    },
}

impl Choice {
    /// The string forms both APIs share: `auto`, `none`, `required`.
    pub fn mode(s: &str) -> Option<Choice> {
        match s {
            "auto" => Some(Choice::Auto),
            "none" => Some(Choice::None),
            "required" => Some(Choice::Required),
            _ => None,
        }
    }
}

/// `temperature`, `top_p` and `top_k`, checked.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sampling {
    temperature: Option<f64>,
    top_p: Option<f64>,
    top_k: Option<u64>,
}

impl Sampling {
    /// Reads and checks them from the request (`null` is absent). They are checked even when
    /// thinking will drop them: a bad value is the client's bug either way.
    pub fn read(req: &Map<String, Value>) -> Result<Sampling, TranslateError> {
        let present = |key: &str| req.get(key).filter(|v| !v.is_null());
        let number = |key: &str, max: f64| match present(key) {
            None => Ok(None),
            Some(v) => match v.as_f64() {
                Some(x) if (0.0..=max).contains(&x) => Ok(Some(x)),
                _ => Err(TranslateError::new(
                    key,
                    format!("`{key}` must be a number from 0 to {max}"),
                )),
            },
        };
        let top_k = match present("top_k") {
            None => None,
            Some(v) => Some(v.as_u64().ok_or_else(|| {
                TranslateError::new("top_k", "`top_k` must be a non-negative integer")
            })?),
        };
        Ok(Sampling {
            temperature: number("temperature", 2.0)?,
            top_p: number("top_p", 1.0)?,
            top_k,
        })
    }

    fn write(self, body: &mut Map<String, Value>) {
        if let Some(t) = self.temperature {
            body.insert("temperature".into(), json!(t.min(1.0)));
        } else if let Some(p) = self.top_p {
            body.insert("top_p".into(), json!(p));
        }
        if let Some(k) = self.top_k {
            body.insert("top_k".into(), json!(k));
        }
    }
}

/// What a door read from its request, in Anthropic terms.
#[derive(Debug, Clone)]
pub struct Draft<'a> {
    /// The model as the client named it (echoed back).
    pub client_model: String,
    /// The resolved model id.
    pub model: String,
    pub stream: bool,
    pub include_usage: bool,
    pub system: Vec<Value>,
    /// The conversation, its text still the client's ([`super::body`]).
    pub messages: Vec<Message<'a>>,
    pub tools: Vec<Value>,
    /// A tool asked for strict schema adherence.
    pub strict_tools: bool,
    pub choice: Option<Choice>,
    /// `parallel_tool_calls`.
    pub parallel: Option<bool>,
    pub format: Format,
    pub effort: Option<ReasoningEffort>,
    /// Responses' `reasoning.summary`.
    pub summary: bool,
    /// The client's output limit.
    pub max_tokens: Option<u64>,
    pub stop_sequences: Vec<String>,
    pub sampling: Sampling,
}

impl<'a> Draft<'a> {
    /// A draft with the required parts; the rest is the door's to fill in.
    pub fn new(client_model: String, model: String, stream: bool) -> Draft<'a> {
        Draft {
            client_model,
            model,
            stream,
            include_usage: false,
            system: Vec::new(),
            messages: Vec::new(),
            tools: Vec::new(),
            strict_tools: false,
            choice: None,
            parallel: None,
            format: Format::Text,
            effort: None,
            summary: false,
            max_tokens: None,
            stop_sequences: Vec::new(),
            sampling: Sampling::default(),
        }
    }

    /// Applies the shared rules of the module docs: the Anthropic request (always streamed).
    pub fn finish(mut self) -> Result<Translated<Body<'a>>, TranslateError> {
        let tool_choice = self.tool_choice()?;
        let forced_tool = tool_choice
            .as_ref()
            .is_some_and(|c| matches!(c["type"].as_str(), Some("any" | "tool")));
        let plan = reasoning::plan(
            &Ask {
                effort: self.effort,
                summary: self.summary,
                client_max: self.max_tokens,
                forced_tool,
                messages: &self.messages,
            },
            &self.model,
        );

        let mut betas = Vec::new();
        let mut output_config = Map::new();
        if self.strict_tools {
            betas.push(betas::STRUCTURED_OUTPUTS);
        }
        match self.format {
            Format::Text => {}
            Format::JsonObject => self
                .system
                .push(json!({"type": "text", "text": JSON_OBJECT_INSTRUCTION})),
            Format::JsonSchema(schema) => {
                output_config.insert(
                    "format".into(),
                    json!({"type": "json_schema", "schema": schema}),
                );
                if !self.strict_tools {
                    betas.push(betas::STRUCTURED_OUTPUTS);
                }
            }
        }
        if let Some(level) = plan.effort {
            output_config.insert("effort".into(), json!(level.as_str()));
            betas.push(betas::EFFORT);
        }

        let mut body = Map::new();
        body.insert("model".into(), json!(self.model));
        body.insert("max_tokens".into(), json!(plan.max_tokens));
        body.insert("stream".into(), json!(true));
        if !self.system.is_empty() {
            body.insert("system".into(), Value::Array(self.system));
        }
        if !self.tools.is_empty() {
            body.insert("tools".into(), Value::Array(self.tools));
        }
        if let Some(choice) = tool_choice {
            body.insert("tool_choice".into(), choice);
        }
        if !self.stop_sequences.is_empty() {
            body.insert("stop_sequences".into(), json!(self.stop_sequences));
        }
        match plan.thinking {
            Some(thinking) => {
                body.insert("thinking".into(), thinking);
            }
            None => self.sampling.write(&mut body),
        }
        if !output_config.is_empty() {
            body.insert("output_config".into(), Value::Object(output_config));
        }
        Ok(Translated {
            body: Body {
                head: body,
                messages: self.messages,
            },
            stream: self.stream,
            client_model: self.client_model,
            betas,
            include_usage: self.include_usage,
        })
    }

    /// The choice and `parallel_tool_calls` → Anthropic's `tool_choice` (`None`: the default).
    fn tool_choice(&mut self) -> Result<Option<Value>, TranslateError> {
        let choice = self.choice.take().unwrap_or(Choice::Auto);
        if let Choice::Tool { name, asked, param } = &choice {
            if !self.tools.iter().any(|t| t["name"] == name.as_str()) {
                return Err(TranslateError::new(
                    param.as_str(),
                    format!("`{asked}` is not one of the declared tools"),
                ));
            }
        }
        if self.tools.is_empty() {
            return match choice {
                Choice::Required => Err(TranslateError::new(
                    "tool_choice",
                    "`tool_choice` forces a tool call but no `tools` are given",
                )),
                _ => Ok(None),
            };
        }
        let serial = self.parallel == Some(false);
        let mut out = match choice {
            Choice::None => return Ok(Some(json!({"type": "none"}))),
            Choice::Auto if !serial => return Ok(None),
            Choice::Auto => json!({"type": "auto"}),
            Choice::Required => json!({"type": "any"}),
            Choice::Tool { name, .. } => json!({"type": "tool", "name": name}),
        };
        if serial {
            out["disable_parallel_tool_use"] = json!(true);
        }
        Ok(Some(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft() -> Draft<'static> {
        let mut d = Draft::new("m".into(), "claude-sonnet-4-6".into(), false);
        d.messages = vec![Message {
            role: "user",
            content: vec![crate::openai::body::Block::Json(
                json!({"type": "text", "text": "hi"}),
            )],
        }];
        d
    }

    #[test]
    fn sampling_sends_temperature_or_top_p_and_nothing_with_thinking() {
        let read = |v: Value| Sampling::read(v.as_object().unwrap());
        let mut d = draft();
        d.sampling = read(json!({"temperature": 1.5, "top_p": 0.5, "top_k": 3})).unwrap();
        let body = d.clone().finish().unwrap().body.to_value();
        assert_eq!(
            (&body["temperature"], &body["top_p"], &body["top_k"]),
            (&json!(1.0), &Value::Null, &json!(3))
        );
        d.effort = Some(ReasoningEffort::Low);
        let body = d.finish().unwrap().body.to_value();
        assert!(body.get("temperature").is_none() && body.get("top_k").is_none());
        for bad in [
            json!({"temperature": 2.5}),
            json!({"top_p": -1}),
            json!({"top_k": 1.5}),
        ] {
            assert!(read(bad).is_err());
        }
    }

    #[test]
    fn tool_choices() {
        let tools = vec![json!({"name": "f", "input_schema": {}})];
        let choose = |choice: Option<Choice>, parallel: Option<bool>, tools: &Vec<Value>| {
            let mut d = draft();
            d.tools = tools.clone();
            d.choice = choice;
            d.parallel = parallel;
            d.finish().map(|t| t.body.to_value()["tool_choice"].clone())
        };
        let named = || {
            Some(Choice::Tool {
                name: "f".into(),
                asked: "f".into(),
                param: "tool_choice.name".into(),
            })
        };
        assert_eq!(choose(Some(Choice::Auto), None, &tools), Ok(Value::Null));
        assert_eq!(
            choose(None, Some(false), &tools),
            Ok(json!({"type": "auto", "disable_parallel_tool_use": true}))
        );
        assert_eq!(
            choose(Some(Choice::None), Some(false), &tools),
            Ok(json!({"type": "none"}))
        );
        assert_eq!(
            choose(named(), Some(false), &tools),
            Ok(json!({"type": "tool", "name": "f", "disable_parallel_tool_use": true}))
        );
        assert_eq!(choose(Some(Choice::None), None, &vec![]), Ok(Value::Null));
        let err = |r: Result<Value, TranslateError>| r.unwrap_err().param;
        assert_eq!(
            err(choose(Some(Choice::Required), None, &vec![])).as_deref(),
            Some("tool_choice")
        );
        assert_eq!(
            err(choose(named(), None, &vec![])).as_deref(),
            Some("tool_choice.name")
        );
    }

    #[test]
    fn json_mode_and_schemas() {
        let mut d = draft();
        d.format = Format::JsonObject;
        let t = d.finish().unwrap();
        assert_eq!(
            t.body.to_value()["system"][0]["text"],
            JSON_OBJECT_INSTRUCTION
        );
        let mut d = draft();
        d.format = Format::JsonSchema(json!({"type": "object"}));
        d.strict_tools = true;
        d.effort = Some(ReasoningEffort::High);
        let t = d.finish().unwrap();
        assert_eq!(t.betas, [betas::STRUCTURED_OUTPUTS, betas::EFFORT]);
        assert_eq!(
            t.body.to_value()["output_config"],
            json!({"format": {"type": "json_schema", "schema": {"type": "object"}}, "effort": "high"})
        );
    }
}
