//! Fuzz target `scep_message`: a SCEP PKIOperation body
//! (`idsync::sources::scep::message::parse`), which the SCEP server reads
//! from anyone on the network, with the RA of the protocol layer's test
//! fixtures.
//!
//! Why: the body is client-chosen BER or DER CMS, two layers deep (signed
//! data around enveloped data around a CSR), whose lengths, tags, OIDs,
//! algorithms and nesting all come from the client; the server must
//! refuse what is wrong and never panic. Input: the body. Checked, beyond
//! not panicking:
//! - BER to DER is idempotent: the DER of a converted body is itself;
//! - a refusal that names a transaction can be answered (a FAILURE
//!   CertRep is made for it);
//! - an accepted message can be answered PENDING.

use idsync::sources::scep::ber;
use idsync::sources::scep::message::{self, Outcome, Ra};

const RA_CERT: &[u8] = include_bytes!("../../../daemon/src/sources/scep/fixtures/ra.der");
const RA_KEY: &[u8] = include_bytes!("../../../daemon/src/sources/scep/fixtures/ra.key.p8.der");

fn ra() -> &'static Ra {
    static RA: std::sync::OnceLock<Ra> = std::sync::OnceLock::new();
    RA.get_or_init(|| Ra::new(RA_CERT.to_vec(), RA_KEY).expect("the fixture RA"))
}

pub fn run(data: &[u8]) {
    if let Ok(der) = ber::to_der(data) {
        assert_eq!(
            ber::to_der(&der).as_deref(),
            Ok(&der[..]),
            "DER converts to itself"
        );
    }
    match message::parse(data, ra()) {
        Ok(msg) => {
            message::cert_rep(&msg, &Outcome::Pending, ra()).expect("a PENDING reply");
        }
        Err(e) => {
            if let Some(to) = e.reply_to {
                let fail = e.error.fail_info();
                message::failure_rep(&to, fail, ra()).expect("a FAILURE reply");
            }
        }
    }
}
