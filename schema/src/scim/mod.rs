//! The SCIM 2.0 protocol layer (RFC 7643, RFC 7644), apart from any server.
//!
//! Why here: like Kanidm's `proto/`, the protocol is pure functions over
//! JSON that can be tested and fuzzed alone; the daemon's SCIM source
//! (`daemon/src/sources/scim/`) adds HTTP, the store and the writer.
//! - [`error`]: the error body (RFC 7644 §3.12) and how a rule violation
//!   reads in it;
//! - [`filter`]: the filter language (tokenizer, bounded recursive-descent
//!   parser, evaluator over a resource's JSON);
//! - [`patch`]: PatchOp bodies and PATCH paths, applied to JSON;
//! - [`mapping`]: idsync's objects ↔ SCIM JSON, a body becoming the same
//!   input a CSV row becomes;
//! - [`view`]: the one rendering of an object, serialised straight to bytes
//!   (list pages) or into a `Value` (everything else);
//! - [`discovery`]: ServiceProviderConfig, ResourceTypes, Schemas.

pub mod attributes;
pub mod discovery;
pub mod error;
pub mod filter;
pub mod mapping;
pub mod patch;
pub mod view;

/// What the discovery documents advertise: the server's configured limits
/// and where it lives.
#[derive(Debug, Clone, Copy)]
pub struct Advertised<'a> {
    /// The absolute URL of the endpoints (`https://idp.example.org/scim/v2`):
    /// what `meta.location` and `$ref` values start with.
    pub url_base: &'a str,
    /// What a user must have: `/Schemas` says `emails` and
    /// `name.familyName` are required only when they are.
    pub rules: crate::RuleSet,
    /// Most operations in one Bulk request.
    pub bulk_max_operations: usize,
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// Most resources a page or a filter returns.
    pub max_results: usize,
    /// Page size when the client gives no `count`.
    pub default_count: usize,
}
