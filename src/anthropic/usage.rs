//! Token counts: what a Messages answer reports in `usage`, booked per request for the
//! account, the audit log and the metrics.

/// Token counts seen in a Messages response.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub input: u64,
    pub output: u64,
    pub cache_read: u64,
    pub cache_creation: u64,
}

impl Usage {
    /// Reads a Messages API `usage` object; fields present override, absent ones are kept.
    pub fn merge(&mut self, usage: &serde_json::Value) {
        let get = |k: &str| usage.get(k).and_then(|v| v.as_u64());
        if let Some(n) = get("input_tokens") {
            self.input = n;
        }
        if let Some(n) = get("output_tokens") {
            self.output = n;
        }
        if let Some(n) = get("cache_read_input_tokens") {
            self.cache_read = n;
        }
        if let Some(n) = get("cache_creation_input_tokens") {
            self.cache_creation = n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_merges() {
        let mut u = Usage::default();
        u.merge(&serde_json::json!({"input_tokens": 5, "cache_read_input_tokens": 2}));
        u.merge(&serde_json::json!({"output_tokens": 7}));
        assert_eq!(
            u,
            Usage {
                input: 5,
                output: 7,
                cache_read: 2,
                cache_creation: 0
            }
        );
    }
}
