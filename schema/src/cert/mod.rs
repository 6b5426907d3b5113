//! Certificate profiles, enrollment requests and issued certificates, and
//! the checks on them that need no I/O: key types, host names, domain
//! policies, subject templates and the request state machine.
//!
//! The CA backends (`idsync-connectors`) and the daemon's enrollment code
//! both decide with these functions, so a name refused at enrollment is
//! refused with the same words whichever protocol asked.
//!
//! - `profile`: protocols, key types, usages and profile settings;
//! - `policy`: DNS names, IP ranges and domain policies;
//! - `subject`: subject templates and the data that fills them;
//! - `request`: enrollment requests and their state machine;
//! - `certificate`: the issued certificate;
//! - `revocation`: why and when one was revoked;
//! - `registration`: an asset registered for ACME or SCEP.
//!
//! The modules are private; every item is re-exported here, at
//! `idsync_schema::cert::…`.

mod certificate;
mod policy;
mod profile;
mod registration;
mod request;
mod revocation;
mod subject;
#[cfg(test)]
mod tests;

pub use certificate::Certificate;
pub use policy::{check_dns_name, check_names, split_dns_list, DomainPolicy, IpRange, NameError};
pub use profile::{
    CertificateProfile, KeyType, ProfileError, ProfileSettings, ProfileState, Protocol, Usage,
};
pub use registration::{AcmeAccount, AcmeAccountStatus, Registration, RegistrationStatus};
pub use request::{EnrollmentRequest, RequestStatus};
pub use revocation::{Revocation, RevocationReason};
pub use subject::{
    check_subject_template, render_subject, CertificateData, SubjectError, SUBJECT_ATTRIBUTES,
    TEMPLATE_FIELDS,
};
