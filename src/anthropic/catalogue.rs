//! The model catalogue: ids listed by `/v1/models`, short aliases, and both list shapes
//! (OpenAI's, and Anthropic's for clients that send `anthropic-version`).
//!
//! Two sources are merged. The configuration (`models.catalogue`, `models.aliases`) always
//! wins: its ids are always listed and its aliases resolve as configured. The upstream's own
//! list (what its models endpoint last reported, handed in by the backend that fetches it:
//! `backends::oauth::models`) adds the models the configuration does not name, and the details
//! of every model it reports. The catalogue only holds data; it never fetches.
//!
//! Listed, in order: the configured ids, then the upstream's other ids (newest first, as it
//! lists them), then the aliases. Anthropic's shape carries each model's object as the upstream
//! reported it (display name, created date, and `max_input_tokens`, `max_tokens` and
//! `capabilities` when it reports them); an alias carries its target's. A model the upstream
//! does not report gets what the configuration alone can say: a display name read from its id
//! and the server's start as its date, nothing else.

use std::collections::hash_map::{Entry, HashMap};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use crate::base::sync::lock;
use crate::config::ModelsConfig;

/// The configured catalogue and the upstream's last good list, ready to list and to resolve
/// aliases.
pub struct Catalogue {
    cfg: ModelsConfig,
    /// Listed `created` time (the server's start) of a model the upstream has not dated.
    created: u64,
    /// The upstream's last good list, each model's object as it came, newest first; empty
    /// until a fetch succeeds. Swapped whole, so a reader holds the lock only to clone the Arc.
    fetched: Mutex<Arc<Vec<Value>>>,
}

/// One listed id and the upstream's object for the model it stands for, if reported.
struct Listed<'a> {
    id: &'a str,
    upstream: Option<&'a Value>,
}

impl Catalogue {
    pub fn new(cfg: ModelsConfig, created: u64) -> Catalogue {
        Catalogue {
            cfg,
            created,
            fetched: Mutex::new(Arc::new(Vec::new())),
        }
    }

    /// Takes the upstream's newest list, replacing the last one (each model a JSON object with
    /// a string `id`; anything else is skipped). The fetcher calls this only for a good list:
    /// a failed fetch leaves the last one in place.
    pub fn update(&self, models: Vec<Value>) {
        let models: Vec<Value> = models
            .into_iter()
            .filter(|m| m.get("id").and_then(Value::as_str).is_some())
            .collect();
        *lock(&self.fetched) = Arc::new(models);
    }

    /// The model id an alias stands for; any other name (known or not) is passed through.
    pub fn resolve<'a>(&'a self, name: &'a str) -> &'a str {
        self.cfg
            .aliases
            .get(name)
            .map(String::as_str)
            .unwrap_or(name)
    }

    /// Every listed id with the upstream's object for its model (see the module docs for the
    /// order). `fetched` is the list read once for this answer.
    fn entries<'a>(&'a self, fetched: &'a [Value]) -> Vec<Listed<'a>> {
        let mut reported: HashMap<&str, &Value> = HashMap::new();
        let mut extra: Vec<&str> = Vec::new();
        for model in fetched {
            let Some(id) = model.get("id").and_then(Value::as_str) else {
                continue;
            };
            // The first report of an id counts; a repeat is ignored.
            if let Entry::Vacant(slot) = reported.entry(id) {
                slot.insert(model);
                if !self.cfg.catalogue.iter().any(|c| c == id) && !self.cfg.aliases.contains_key(id)
                {
                    extra.push(id);
                }
            }
        }
        self.cfg
            .catalogue
            .iter()
            .map(String::as_str)
            .chain(extra)
            .chain(self.cfg.aliases.keys().map(String::as_str))
            .map(|id| Listed {
                id,
                upstream: reported.get(self.resolve(id)).copied(),
            })
            .collect()
    }

    fn fetched(&self) -> Arc<Vec<Value>> {
        lock(&self.fetched).clone()
    }

    /// `{"object":"list","data":[{"id","object":"model","created","owned_by"}]}`; `created` is
    /// the upstream's date of the model when it reported one.
    pub fn openai_list(&self) -> Value {
        let fetched = self.fetched();
        let data: Vec<Value> = self
            .entries(&fetched)
            .iter()
            .map(|e| {
                let created = e
                    .upstream
                    .and_then(|m| m.get("created_at")?.as_str())
                    .and_then(crate::base::clock::parse_rfc3339)
                    .unwrap_or(self.created);
                json!({"id": e.id, "object": "model", "created": created, "owned_by": "anthropic"})
            })
            .collect();
        json!({"object": "list", "data": data})
    }

    /// `{"data":[{"type":"model","id","display_name","created_at",…}],"has_more","first_id","last_id"}`
    pub fn anthropic_list(&self) -> Value {
        let fetched = self.fetched();
        let entries = self.entries(&fetched);
        let created_at = crate::base::clock::rfc3339(self.created);
        let data: Vec<Value> = entries
            .iter()
            .map(|e| match e.upstream {
                Some(reported) => {
                    let mut model = reported.clone();
                    if let Some(fields) = model.as_object_mut() {
                        // An alias is listed under its own name, with what its target is.
                        fields.insert("id".into(), e.id.into());
                        fields.entry("type").or_insert_with(|| "model".into());
                    }
                    model
                }
                None => {
                    let shown = display_name(self.resolve(e.id));
                    json!({"type": "model", "id": e.id, "display_name": shown, "created_at": created_at})
                }
            })
            .collect();
        let first = entries.first().map(|e| e.id);
        let last = entries.last().map(|e| e.id);
        json!({"data": data, "has_more": false, "first_id": first, "last_id": last})
    }
}

/// `claude-sonnet-4-6` → `Claude Sonnet 4.6`; `claude-haiku-4-5-20251001` → `Claude Haiku 4.5`.
fn display_name(id: &str) -> String {
    let mut words = Vec::new();
    let mut version = Vec::new();
    for part in id.split('-') {
        if part.chars().all(|c| c.is_ascii_digit()) {
            if part.len() < 8 {
                version.push(part);
            }
        } else {
            let mut c = part.chars();
            let word = c
                .next()
                .map(|f| f.to_uppercase().chain(c).collect())
                .unwrap_or_default();
            words.push(word);
        }
    }
    if !version.is_empty() {
        words.push(version.join("."));
    }
    words.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names() {
        assert_eq!(display_name("claude-sonnet-4-6"), "Claude Sonnet 4.6");
        assert_eq!(
            display_name("claude-haiku-4-5-20251001"),
            "Claude Haiku 4.5"
        );
        assert_eq!(display_name("claude-sonnet-5"), "Claude Sonnet 5");
    }

    #[test]
    fn aliases_resolve_and_unknown_passes() {
        let c = Catalogue::new(crate::config::Config::default().models, 0);
        assert_eq!(c.resolve("haiku"), "claude-haiku-4-5-20251001");
        assert_eq!(c.resolve("my-model"), "my-model");
        let list = c.anthropic_list();
        assert_eq!(list["first_id"], "claude-opus-4-8");
        assert_eq!(list["has_more"], false);
        assert!(c.openai_list()["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == "sonnet"));
    }

    fn small() -> Catalogue {
        let cfg = ModelsConfig {
            catalogue: vec!["claude-a-1".into(), "claude-b-1".into()],
            aliases: [("a".to_string(), "claude-a-1".to_string())].into(),
            refresh_s: 0,
        };
        Catalogue::new(cfg, 0)
    }

    fn ids(list: &Value) -> Vec<&str> {
        let data = list["data"].as_array().unwrap();
        data.iter().map(|m| m["id"].as_str().unwrap()).collect()
    }

    #[test]
    fn the_upstream_list_is_merged_under_the_configuration() {
        let c = small();
        let new = json!({"type": "model", "id": "claude-c-2", "display_name": "C 2",
            "created_at": "2027-01-15T00:00:00Z", "max_tokens": 64000,
            "capabilities": {"thinking": {"supported": true}}});
        c.update(vec![
            new.clone(),
            json!({"type": "model", "id": "claude-a-1", "display_name": "A one", "created_at": "2026-01-01T00:00:00Z"}),
            json!({"type": "model", "id": "a", "display_name": "not our alias"}),
            json!({"id": "claude-c-2", "display_name": "a duplicate"}),
            json!("not an object"),
            json!({"id": 7}),
        ]);
        let list = c.anthropic_list();
        assert_eq!(ids(&list), ["claude-a-1", "claude-b-1", "claude-c-2", "a"]);
        assert_eq!(list["data"][2], new, "passed through as reported");
        assert_eq!(list["data"][0]["display_name"], "A one");
        assert_eq!(
            list["data"][3]["display_name"], "A one",
            "the alias's target"
        );
        assert_eq!(list["data"][3]["id"], "a");
        assert_eq!(
            list["data"][1],
            json!({"type": "model", "id": "claude-b-1", "display_name": "Claude B 1", "created_at": "1970-01-01T00:00:00Z"}),
            "a configured id the upstream does not report: nothing invented"
        );
        assert_eq!(
            (list["first_id"].as_str(), list["last_id"].as_str()),
            (Some("claude-a-1"), Some("a"))
        );
        assert_eq!(c.resolve("a"), "claude-a-1");

        let openai = c.openai_list();
        assert_eq!(ids(&openai), ids(&list));
        assert_eq!(openai["data"][2]["created"], 1_799_971_200u64);
        assert_eq!(
            openai["data"][1]["created"], 0,
            "undated: the server's start"
        );

        // A later list replaces it whole.
        c.update(vec![]);
        assert_eq!(ids(&c.anthropic_list()), ["claude-a-1", "claude-b-1", "a"]);
    }
}
