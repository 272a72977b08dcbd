//! The model catalogue: ids listed by `/v1/models`, short aliases, and both list shapes
//! (OpenAI's, and Anthropic's for clients that send `anthropic-version`).

use serde_json::{json, Value};

use crate::config::ModelsConfig;

/// The configured catalogue, ready to list and to resolve aliases.
pub struct Catalogue {
    cfg: ModelsConfig,
    /// Listed `created` time (the server's start), since the catalogue has no real dates.
    created: u64,
}

impl Catalogue {
    pub fn new(cfg: ModelsConfig, created: u64) -> Catalogue {
        Catalogue { cfg, created }
    }

    /// The model id an alias stands for; any other name (known or not) is passed through.
    pub fn resolve<'a>(&'a self, name: &'a str) -> &'a str {
        self.cfg
            .aliases
            .get(name)
            .map(String::as_str)
            .unwrap_or(name)
    }

    /// Every listed id: the catalogue, then the aliases.
    fn ids(&self) -> impl Iterator<Item = &str> {
        self.cfg
            .catalogue
            .iter()
            .chain(self.cfg.aliases.keys())
            .map(String::as_str)
    }

    /// `{"object":"list","data":[{"id","object":"model","created","owned_by"}]}`
    pub fn openai_list(&self) -> Value {
        let data: Vec<Value> = self
            .ids()
            .map(|id| json!({"id": id, "object": "model", "created": self.created, "owned_by": "anthropic"}))
            .collect();
        json!({"object": "list", "data": data})
    }

    /// `{"data":[{"type":"model","id","display_name","created_at"}],"has_more","first_id","last_id"}`
    pub fn anthropic_list(&self) -> Value {
        let created_at = crate::base::clock::rfc3339(self.created);
        let data: Vec<Value> = self
            .ids()
            .map(|id| {
                let shown = display_name(self.resolve(id));
                json!({"type": "model", "id": id, "display_name": shown, "created_at": created_at})
            })
            .collect();
        let first = self.ids().next();
        let last = self.ids().last();
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
}
