//! idsync's domain model: the objects it keeps (users, groups, assets,
//! certificate profiles), the rules every value must follow, and the CSV
//! layouts that sysadmins drop into folders.
//!
//! This crate is pure on purpose: no I/O, no clock, no async. The CSV reader,
//! the SCIM server and the admin API all turn their input into the same
//! [`input`] types and run the same [`rules`], so a value refused over SCIM is
//! refused in a CSV file with the same words.

pub mod activation;
pub mod cert;
pub mod csv_format;
pub mod csv_quotes;
pub mod input;
pub mod model;
pub mod password;
pub mod report;
pub mod rules;
pub mod scim;
pub mod text;

pub use activation::{Activation, ActivationState, ApplicationSettings, SendPolicy};
pub use cert::{
    AcmeAccount, AcmeAccountStatus, Certificate, CertificateData, CertificateProfile, DomainPolicy,
    EnrollmentRequest, KeyType, ProfileSettings, ProfileState, Protocol, Registration,
    RegistrationStatus, RequestStatus, Usage,
};
pub use input::{AssetInput, Field, GroupInput, UserInput};
pub use model::{
    ActivationMail, Asset, AssetState, Group, Kind, Meta, Operation, Source, Status, User,
};
pub use rules::{Rule, RuleSet, UserRules, Violation};
