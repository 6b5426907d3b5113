//! The enrollment commands as clap reads them: their arguments and help
//! text (`idsync profiles|assets|enroll|requests|registrations|certificates
//! --help`).

use std::path::PathBuf;

use clap::{Args, Subcommand};

/// `idsync profiles …`
#[derive(Debug, Subcommand)]
pub enum ProfilesCommand {
    /// List the certificate profiles.
    List,
    /// Show one profile as JSON.
    Show { name: String },
    /// Create or replace a profile from a TOML or JSON file holding the keys
    /// of one `[[profiles]]` entry (docs/certificates.md).
    Put { file: PathBuf },
    /// Delete a profile; its assets become pending.
    Delete { name: String },
}

/// `idsync assets …`
#[derive(Debug, Subcommand)]
pub enum AssetsCommand {
    /// Assign an active certificate profile to an asset, which becomes
    /// active.
    AssignProfile { asset: String, profile: String },
    /// List the certificates issued for an asset.
    Certificates { asset: String },
}

/// What an enrollment is for.
#[derive(Debug, Args)]
pub struct TargetArgs {
    /// The asset (name or id); its profile and data are used.
    #[arg(long)]
    pub asset: Option<String>,
    /// The certificate profile (default: the asset's).
    #[arg(long)]
    pub profile: Option<String>,
}

/// `idsync enroll …`
#[derive(Debug, Subcommand)]
pub enum EnrollCommand {
    /// Upload a CSR (PEM or DER); print the certificate and chain (PEM).
    P10 {
        #[command(flatten)]
        target: TargetArgs,
        #[arg(long)]
        csr: PathBuf,
        /// Write the certificate and chain here instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Have idsync generate the key; write a password-protected PKCS#12.
    P12 {
        #[command(flatten)]
        target: TargetArgs,
        /// Where to write the .p12 file (created 0600, never overwritten).
        #[arg(long)]
        out: PathBuf,
        /// The common name (`{name}` of the subject template).
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        organization: Option<String>,
        #[arg(long)]
        country: Option<String>,
        /// DNS names, comma-separated (seed 002).
        #[arg(long)]
        dns: Option<String>,
        /// IP addresses, comma-separated.
        #[arg(long)]
        ip: Option<String>,
        /// ecdsa-p256, ecdsa-p384, rsa-2048, rsa-3072, rsa-4096, ed25519
        /// (default: the profile's first).
        #[arg(long)]
        key_type: Option<String>,
        /// Read the password from the first line of this file instead of
        /// asking.
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
    /// Register an asset for ACME: print the external account binding
    /// (key id and HMAC key, shown once) its ACME client enrolls with.
    Acme {
        #[command(flatten)]
        target: TargetArgs,
        /// The DNS names the device may get certificates for,
        /// comma-separated (default: the asset's).
        #[arg(long)]
        dns: Option<String>,
    },
    /// Register an asset for SCEP: print the one-time challenge password
    /// (shown once) its SCEP client enrolls with.
    Scep {
        #[command(flatten)]
        target: TargetArgs,
        /// The DNS names the device may get certificates for,
        /// comma-separated (default: the asset's).
        #[arg(long)]
        dns: Option<String>,
    },
}

/// `idsync registrations …`
#[derive(Debug, Subcommand)]
pub enum RegistrationsCommand {
    /// List ACME and SCEP registrations, newest first.
    List {
        /// pending_approval, active, used, expired, revoked or rejected.
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        asset: Option<String>,
        /// acme or scep.
        #[arg(long)]
        protocol: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one registration as JSON (never its secret).
    Show { id: String },
    /// Approve a registration (approver role; not your own).
    Approve {
        id: String,
        #[arg(long)]
        comment: Option<String>,
    },
    /// Reject a registration (approver role; not your own).
    Reject {
        id: String,
        #[arg(long)]
        comment: Option<String>,
    },
    /// Withdraw a registration: its secret stops working.
    Revoke { id: String },
}

/// `idsync requests …`
#[derive(Debug, Subcommand)]
pub enum RequestsCommand {
    /// List enrollment requests, newest first.
    List {
        /// pending_approval, approved, issued, rejected or failed.
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        asset: Option<String>,
        #[arg(long)]
        profile: Option<String>,
        #[arg(long)]
        requester: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one request as JSON.
    Show { id: String },
    /// Approve a request (approver role; not your own).
    Approve {
        id: String,
        #[arg(long)]
        comment: Option<String>,
    },
    /// Reject a request (approver role; not your own).
    Reject {
        id: String,
        #[arg(long)]
        comment: Option<String>,
    },
    /// Download the PKCS#12 of an approved P12 request (its requester).
    Download {
        id: String,
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
}

/// `idsync certificates …`
#[derive(Debug, Subcommand)]
pub enum CertificatesCommand {
    /// Show one certificate's record as JSON.
    Show { id: String },
    /// Print (or write) the certificate and its chain, PEM.
    Download {
        id: String,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Confirm that the certificate is installed (seed 002, last step).
    Confirm { id: String },
    /// Revoke the certificate (final) and publish its issuer's CRL.
    Revoke {
        id: String,
        /// unspecified, key-compromise, affiliation-changed, superseded,
        /// cessation-of-operation or privilege-withdrawn (RFC 5280 §5.3.1).
        #[arg(long, default_value = "unspecified")]
        reason: String,
    },
    /// Print the CA chain that issued certificates verify against.
    Ca,
}

/// Any of the enrollment commands.
#[derive(Debug)]
pub(crate) enum Command {
    Profiles(ProfilesCommand),
    Assets(AssetsCommand),
    Enroll(EnrollCommand),
    Requests(RequestsCommand),
    Registrations(RegistrationsCommand),
    Certificates(CertificatesCommand),
}
