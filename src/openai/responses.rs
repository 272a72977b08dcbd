//! `/v1/responses` ⇄ Anthropic Messages (being written).
