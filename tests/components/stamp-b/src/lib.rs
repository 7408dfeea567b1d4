//! Test component: version "b" of a plugin that is hot-reloaded while
//! requests flow (`stamp-a` is version "a"; the two differ only in
//! [`STAMP`]). Used as both verifier and transform of one route, so a
//! delivery shows which version ran each stage:
//!
//! - verify checks `X-Hub-Signature-256` (HMAC-SHA256 of the body with
//!   `with.secret`), accepts with event type `stamp-<STAMP>` and answers
//!   the sender `200 stamp-<STAMP>` (so a client, e.g. the reload
//!   benchmark, sees which version served it);
//! - transform copies that event type to `x-verify-stamp`, adds its own
//!   `x-transform-stamp: <STAMP>`, and `x-tag: <with.tag>` when set.
//!
//! A request that ran two versions would arrive with two different stamps.
/// What this build stamps.
const STAMP: &str = "b";

// The same plugin as stamp-a: one source, two builds.
include!("../../stamp-a/src/stamp.rs");
