//! SCIM filters and PATCH paths written back as text, for the round-trip
//! properties of the `scim_filter` and `scim_patch` targets.
//!
//! Why the fuzz harness has its own printer: the schema crate only parses
//! (nothing there needs to write a filter). Printing every parsed AST and
//! parsing it again checks that the parser reads operator precedence,
//! grouping, `not`, value paths, URN paths and escaped strings the way they
//! are written, which "no panic" alone would not. Parentheses appear only
//! where the grammar needs them, so the printed text nests no deeper than
//! the text that was parsed and passes the same depth bound.

use idsync_schema::scim::filter::{AttrPath, CompareOp, Filter};
use idsync_schema::scim::patch::Path;

/// `[urn:]attr[.sub]`.
pub fn attr_path(p: &AttrPath) -> String {
    let mut out = String::new();
    if let Some(urn) = &p.urn {
        out.push_str(urn);
        out.push(':');
    }
    out.push_str(&p.attr);
    if let Some(sub) = &p.sub {
        out.push('.');
        out.push_str(sub);
    }
    out
}

/// A PATCH path: `attr`, `attr[filter]`, `attr[filter].sub`.
pub fn patch_path(p: &Path) -> String {
    let mut out = attr_path(&p.attr);
    if let Some(f) = &p.filter {
        out.push('[');
        out.push_str(&filter(f));
        out.push(']');
    }
    if let Some(sub) = &p.sub_after_filter {
        out.push('.');
        out.push_str(sub);
    }
    out
}

/// A filter in the syntax of RFC 7644 §3.4.2.2.
pub fn filter(f: &Filter) -> String {
    let mut out = String::new();
    write(f, &mut out);
    out
}

fn op(o: CompareOp) -> &'static str {
    match o {
        CompareOp::Eq => "eq",
        CompareOp::Ne => "ne",
        CompareOp::Co => "co",
        CompareOp::Sw => "sw",
        CompareOp::Ew => "ew",
        CompareOp::Gt => "gt",
        CompareOp::Ge => "ge",
        CompareOp::Lt => "lt",
        CompareOp::Le => "le",
    }
}

fn grouped(f: &Filter, out: &mut String) {
    out.push('(');
    write(f, out);
    out.push(')');
}

/// `or` binds loosest and `and` next, both to the left: a left operand of
/// the same operator needs no parentheses, a right one does.
fn write(f: &Filter, out: &mut String) {
    match f {
        Filter::Or(a, b) => {
            write(a, out);
            out.push_str(" or ");
            if matches!(**b, Filter::Or(..)) {
                grouped(b, out);
            } else {
                write(b, out);
            }
        }
        Filter::And(a, b) => {
            if matches!(**a, Filter::Or(..)) {
                grouped(a, out);
            } else {
                write(a, out);
            }
            out.push_str(" and ");
            if matches!(**b, Filter::Or(..) | Filter::And(..)) {
                grouped(b, out);
            } else {
                write(b, out);
            }
        }
        Filter::Not(inner) => {
            out.push_str("not ");
            grouped(inner, out);
        }
        Filter::Present(p) => {
            out.push_str(&attr_path(p));
            out.push_str(" pr");
        }
        Filter::Compare(p, o, v) => {
            out.push_str(&attr_path(p));
            out.push(' ');
            out.push_str(op(*o));
            out.push(' ');
            // Strings come back JSON-escaped, numbers in serde_json's
            // shortest round-trip form, `true`/`false`/`null` as words.
            out.push_str(&v.to_string());
        }
        Filter::Complex(p, inner) => {
            out.push_str(&attr_path(p));
            out.push('[');
            write(inner, out);
            out.push(']');
        }
    }
}
