//! `/v1/chat/completions` ⇄ Anthropic Messages (being written).
