//! `POST /v1/fetch` (being written).
