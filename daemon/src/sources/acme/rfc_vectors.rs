//! The RFCs' own examples: RFC 7515 A.2 (RS256) and A.3 (ES256), RFC 8037
//! A.1, A.3 and A.4 (Ed25519 key, its thumbprint, an EdDSA signature) and
//! RFC 7638 §3.1 (an RSA key's thumbprint). The values are the RFCs',
//! joined where the RFC wraps them; each was checked against a second,
//! independent implementation (Python `cryptography`) when copied.
//!
//! The RFC examples are bare JWSs, not ACME requests (no `url`, no key in
//! the header), so they go through the signature check a parsed request
//! ends in ([`Jwk::verify`]) with the signing input rebuilt as RFC 7515
//! §5.2 defines it.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::json;

use super::jwk::Jwk;
use super::jws::{Alg, JwsError};

/// `protected.payload`, and the decoded signature.
fn input_and_signature(protected: &str, payload: &str, signature: &str) -> (Vec<u8>, Vec<u8>) {
    let input = format!("{protected}.{payload}").into_bytes();
    (input, URL_SAFE_NO_PAD.decode(signature).unwrap())
}

/// A changed last byte of the signature must fail.
fn flipped(sig: &[u8]) -> Vec<u8> {
    let mut s = sig.to_vec();
    *s.last_mut().unwrap() ^= 1;
    s
}

const A2_PROTECTED: &str = "eyJhbGciOiJSUzI1NiJ9";
const A2_PAYLOAD: &str = concat!(
    "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFt",
    "cGxlLmNvbS9pc19yb290Ijp0cnVlfQ",
);
const A2_N: &str = concat!(
    "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp",
    "-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOW",
    "vG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUs",
    "LA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9k",
    "G4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2",
    "PAcDTW9gb54h4FRWyuXpoQ",
);
const A2_E: &str = "AQAB";
const A2_SIGNATURE: &str = concat!(
    "cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7",
    "AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4",
    "BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K",
    "0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqv",
    "hJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrB",
    "p0igcN_IoypGlUPQGe77Rw",
);
const A3_PROTECTED: &str = "eyJhbGciOiJFUzI1NiJ9";
const A3_PAYLOAD: &str = concat!(
    "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFt",
    "cGxlLmNvbS9pc19yb290Ijp0cnVlfQ",
);
const A3_X: &str = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
const A3_Y: &str = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";
const A3_SIGNATURE: &str = concat!(
    "DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSA",
    "pmWQxfKTUJqPP3-Kg6NU1Q",
);
const E_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
const E_PROTECTED: &str = "eyJhbGciOiJFZERTQSJ9";
const E_PAYLOAD: &str = "RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc";
const E_SIGNATURE: &str = concat!(
    "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5B",
    "hVsPt9g7sVvpAr_MuM0KAg",
);
const E_THUMB: &str = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k";
const T_N: &str = concat!(
    "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86z",
    "wu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5Js",
    "GY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMic",
    "AtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-",
    "bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csF",
    "Cur-kEgU8awapJzKnqDKgw",
);
const T_E: &str = "AQAB";
const T_THUMB: &str = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs";

#[test]
fn rfc_7515_a2_rs256() {
    let key = Jwk::from_json(&json!({"kty": "RSA", "n": A2_N, "e": A2_E})).unwrap();
    let (input, sig) = input_and_signature(A2_PROTECTED, A2_PAYLOAD, A2_SIGNATURE);
    key.verify(Alg::Rs256, &input, &sig).unwrap();
    assert_eq!(
        key.verify(Alg::Rs256, &input, &flipped(&sig)),
        Err(JwsError::BadSignature)
    );
    assert!(matches!(
        key.verify(Alg::Es256, &input, &sig),
        Err(JwsError::BadAlgorithm(_))
    ));
}

#[test]
fn rfc_7515_a3_es256() {
    let key = Jwk::from_json(&json!({"kty": "EC", "crv": "P-256", "x": A3_X, "y": A3_Y})).unwrap();
    let (input, sig) = input_and_signature(A3_PROTECTED, A3_PAYLOAD, A3_SIGNATURE);
    key.verify(Alg::Es256, &input, &sig).unwrap();
    assert_eq!(
        key.verify(Alg::Es256, &input, &flipped(&sig)),
        Err(JwsError::BadSignature)
    );
    // The same signature over another payload.
    let (other, _) = input_and_signature(A3_PROTECTED, "e30", A3_SIGNATURE);
    assert_eq!(
        key.verify(Alg::Es256, &other, &sig),
        Err(JwsError::BadSignature)
    );
}

#[test]
fn rfc_8037_ed25519() {
    let key = Jwk::from_json(&json!({"kty": "OKP", "crv": "Ed25519", "x": E_X})).unwrap();
    assert_eq!(key.thumbprint(), E_THUMB, "A.3");
    let (input, sig) = input_and_signature(E_PROTECTED, E_PAYLOAD, E_SIGNATURE);
    key.verify(Alg::EdDsa, &input, &sig).unwrap();
    assert_eq!(
        key.verify(Alg::EdDsa, &input, &flipped(&sig)),
        Err(JwsError::BadSignature)
    );
}

#[test]
fn rfc_7638_thumbprint() {
    // The RFC's key has alg and kid too: not part of the thumbprint.
    let jwk = json!({"kty": "RSA", "n": T_N, "e": T_E, "alg": "RS256", "kid": "2011-04-29"});
    assert_eq!(Jwk::from_json(&jwk).unwrap().thumbprint(), T_THUMB);
}
