//! `/v1/responses` (the OpenAI Responses API) ⇄ Anthropic Messages. Pure: no I/O, tested with
//! the golden files in `tests/golden/responses/`.
//!
//! - [`translate_request`] (here): a Responses request → an Anthropic Messages request; input
//!   items are read in [`items`], tools in [`tools`];
//! - [`ResponsesStream`] ([`stream`]): Anthropic events → Responses stream events;
//! - [`response_object`] ([`object`]): the collected message → the non-streaming Response.
//!
//! # Request parameters
//!
//! | parameter | what happens |
//! |---|---|
//! | `model` | required; resolved through the alias table; echoed as the client sent it |
//! | `input` | a string (one user message) or a list of items, see below |
//! | `instructions` | the first `system` block |
//! | `stream` | the client's choice; upstream is always streamed |
//! | `max_output_tokens` | `max_tokens`; absent: see [`super::reasoning`] |
//! | `reasoning.effort` | the reasoning plan of [`super::reasoning`], the same table as `/v1/chat/completions`; `none` or absent: no thinking |
//! | `reasoning.summary` | on adaptive models, `auto`/`concise`/`detailed` ask for summarized thinking text (`thinking.display`) |
//! | `temperature`, `top_p` | the sampling rule of [`super::draft`] (one for both doors) |
//! | `tools`, `tool_choice`, `parallel_tool_calls` | see the tools section |
//! | `text.format` | `json_schema` → `output_config.format`; `json_object` → JSON mode ([`super::draft`]); `text` → nothing |
//! | `text.verbosity`, `metadata`, `user`, `safety_identifier`, `prompt_cache_key`, `prompt_cache_retention`, `service_tier`, `client_metadata`, `stream_options` | accepted; not sent upstream (`metadata` is echoed) |
//! | `store` | accepted and echoed; nothing is ever stored, so nothing is retrievable |
//! | `truncation` | `disabled` or `auto` accepted (we never truncate; a too-long input fails upstream) |
//! | `include` | accepted; `reasoning.encrypted_content` is always included anyway; `message.output_text.logprobs` → 400 |
//! | `top_logprobs` | 0 or null only |
//! | `previous_response_id`, `conversation`, `prompt`, `background: true`, `max_tool_calls` | 400: we keep no server-side state and cannot bound tool calls |
//! | anything else | 400 naming the parameter |
//!
//! # Input items
//!
//! - **Messages** (`{"type":"message",…}` or the shorthand `{"role":…,"content":…}`): `user`
//!   parts `input_text`, `input_image` (a data URL or an `http(s)` URL; `image_url` as a
//!   string or `{"url":…}`), `input_file` (a PDF as `file_data` — data URL or bare base64 with
//!   a `.pdf` filename — or `file_url`; `file_id` → 400, we store no files), converted by the
//!   shared [`super::content`] (a part's `cache_control` is kept); `assistant` parts are text
//!   only; `system`/`developer` text joins the top-level `system` after `instructions`, in
//!   order, wherever the item sits. Empty texts are skipped (Anthropic rejects empty text
//!   blocks).
//! - **`function_call`** → assistant `tool_use` (id = `call_id` byte for byte; arguments that are
//!   not a JSON object become `{}`); **`custom_tool_call`** → `tool_use` with `{"input": …}`;
//!   **`function_call_output`** / **`custom_tool_call_output`** → user `tool_result` (string or
//!   text/image/file parts).
//! - **`reasoning`** → an assistant `thinking` / `redacted_thinking` block, only when its
//!   `encrypted_content` is ours (below); foreign or missing content is dropped, since Anthropic
//!   cannot verify it. **`web_search_call`** items are dropped (the results cannot be replayed).
//!   Any other item type → 400.
//! - Consecutive same-role turns are merged and ordered as [`super::content::Turns`] says
//!   (the same rule as chat's).
//!
//! # `encrypted_content`
//!
//! A reasoning item's `encrypted_content` is `claudegate:v1:` followed by the standard base64
//! (with padding) of the JSON of the Anthropic block itself: `{"type":"thinking","thinking":…,
//! "signature":…}` or `{"type":"redacted_thinking","data":…}`. It carries the thinking text as
//! well as the signature, so a replay does not depend on the client keeping `summary` intact.
//! A thinking block without a signature gets `encrypted_content: null` (it could not be replayed).
//!
//! # Thinking
//!
//! The one table of [`super::reasoning`]. A signed thinking block replayed in front of a tool
//! call (see `encrypted_content` above) keeps budget thinking on for the next turn.
//!
//! # Tools
//!
//! - `function` → `{name, description, input_schema: parameters}` (`strict` ignored).
//! - `custom` (freeform, e.g. Codex's `apply_patch`) → a tool taking `{"input": string}`; a
//!   grammar is appended to the description. Calls come back as `custom_tool_call` items.
//! - `namespace` → its `function`/`custom` children, flattened to `<namespace>__<name>` (the
//!   namespace's trailing and the name's leading `_` trimmed, as Codex does); a name already
//!   taken gets `_2`, `_3`, …. Calls come back with `namespace` and the short `name`.
//! - `web_search` / `web_search_preview` (Codex declares it on every request) → Anthropic's
//!   `web_search_20250305` server tool: `max_uses` 3/5/10 by `search_context_size`
//!   low/medium/high, `filters.allowed_domains` and `user_location` kept. Declared with
//!   `external_web_access: false` (no live access, Codex's default) it is left out.
//! - `tool_search` is dropped: deferred tools are declared directly.
//! - Other hosted tools (`file_search`, `code_interpreter`, `computer_use_preview`,
//!   `image_generation`, `mcp`, `local_shell`, …) → 400 naming the type.
//! - `tool_choice`: `auto`, `none`, `required`, `{"type":"function"|"custom","name"}` (a
//!   declared tool) and `{"type":"web_search"}`, with `parallel_tool_calls`, converted as
//!   [`super::draft`] says (the same rule as chat's).
//!
//! # Output
//!
//! - Items get `output_index` 0, 1, 2… in the order we emit them, and ids
//!   `<prefix>_<response id without resp_>_<output_index>`: `rs_` reasoning (one per thinking
//!   block), `msg_` message (one per run of consecutive text blocks, with a single
//!   `output_text` part holding the whole run), `fc_` function call, `ctc_` custom tool call,
//!   `ws_` web search call (`action.query` and `action.sources` from the search).
//! - `web_search_result_location` citations become `url_citation` annotations over their text
//!   block's span of the part, counted in characters.
//! - A custom tool's input is sent as one delta when its block ends. Function arguments are
//!   re-serialised compactly at the end (`.done`), so the stream and the non-streaming object
//!   agree exactly (the collected message only keeps the parsed input).
//! - `stop_reason` `max_tokens` (or a full context window) gives `status: "incomplete"` with
//!   reason `max_output_tokens`, `refusal` reason `content_filter`; the final event is
//!   `response.completed` either way (the SDKs' `get_final_response()` needs it).
//! - An upstream failure after the first byte (an `error` event, or [`ResponsesStream::fail`])
//!   ends with `response.failed`: `error.code` is `rate_limit_exceeded` for a
//!   `rate_limit_error`, `invalid_prompt` for an `invalid_request_error`, else `server_error`;
//!   `output` lists the items finished so far.

pub mod items;
pub mod object;
pub mod request;
pub mod stream;
pub mod tools;

pub use object::response_object;
pub use request::{translate, translate_request};
pub use stream::ResponsesStream;

#[cfg(test)]
mod tests;
