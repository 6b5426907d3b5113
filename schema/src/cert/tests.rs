//! The checks of names, policies, subject templates, profile settings
//! and the request state machine, across the modules of [`super`].

use super::*;

#[test]
fn dns_names() {
    for ok in [
        "a.example.org",
        "*.example.org",
        "x-1.y",
        "localhost",
        "A.B",
    ] {
        assert_eq!(check_dns_name(ok), Ok(()), "{ok}");
    }
    for bad in [
        "",
        "*.",
        "a..b",
        "-a.b",
        "a-.b",
        "a_b.c",
        "a.*.b",
        "**.a",
        "é.org",
        "a.org.",
        &"a".repeat(64),
    ] {
        assert!(check_dns_name(bad).is_err(), "{bad:?}");
    }
    assert!(check_dns_name(&format!("{}.org", ["a"; 130].join("."))).is_err());
    assert_eq!(split_dns_list(" A.org, b.org,,"), ["a.org", "b.org"]);
    assert!(split_dns_list(",,").is_empty());
}

#[test]
fn domain_policy() {
    let p = DomainPolicy {
        names: vec!["www.example.org".into(), "*.corp.example.org".into()],
        ip_ranges: vec![
            "10.1.0.0/16".into(),
            "2001:db8::/32".into(),
            "192.0.2.7".into(),
        ],
    };
    assert!(p.check().is_ok());
    assert!(p.allows_dns("WWW.example.org"));
    assert!(p.allows_dns("a.corp.example.org"));
    assert!(p.allows_dns("a.b.corp.example.org"));
    assert!(p.allows_dns("*.corp.example.org"));
    assert!(!p.allows_dns("corp.example.org"));
    assert!(!p.allows_dns("xcorp.example.org"));
    assert!(!p.allows_dns("api.example.org"));
    assert!(p.allows_ip("10.1.200.3".parse().unwrap()));
    assert!(!p.allows_ip("10.2.0.1".parse().unwrap()));
    assert!(p.allows_ip("2001:db8::1".parse().unwrap()));
    assert!(p.allows_ip("192.0.2.7".parse().unwrap()));
    assert!(!p.allows_ip("192.0.2.8".parse().unwrap()));
    assert_eq!(
        p.permitted_dns_subtrees(),
        ["corp.example.org", "www.example.org"]
    );
    assert!(DomainPolicy::default().allows_dns("anything.at.all"));
    let r = IpRange::parse("10.1.0.0/16").unwrap();
    assert_eq!(
        r.address_and_mask(),
        (vec![10, 1, 0, 0], vec![255, 255, 0, 0])
    );
    assert!(IpRange::parse("10.0.0.0/33").is_err());
    assert!(IpRange::parse("x/8").is_err());
    assert!(IpRange::parse("0.0.0.0/0")
        .unwrap()
        .contains("8.8.8.8".parse().unwrap()));
}

#[test]
fn subjects() {
    let data = CertificateData {
        name: Some("web1.example.org".into()),
        organization: Some("Nexus".into()),
        country: None,
        ..Default::default()
    };
    let s = render_subject("CN={name}, O={organization}, C={country}", &data).unwrap();
    assert_eq!(
        s,
        [
            ("CN".into(), "web1.example.org".into()),
            ("O".into(), "Nexus".into())
        ]
    );
    let bad_country = CertificateData {
        country: Some("Sweden".into()),
        ..data.clone()
    };
    assert!(render_subject("CN={name},C={country}", &bad_country).is_err());
    assert!(check_subject_template("CN={nope}").is_err());
    assert!(check_subject_template("XX=a").is_err());
    assert!(check_subject_template("CN={name").is_err());
    assert!(
        render_subject("C={country}", &data).is_err(),
        "nothing left"
    );
    let typed = CertificateData {
        organization: Some("Other".into()),
        ..Default::default()
    };
    assert_eq!(typed.or(data).organization.as_deref(), Some("Other"));
}

#[test]
fn profiles_and_requests() {
    let mut p = ProfileSettings::new("Server", Protocol::P10);
    assert!(p.check().is_ok());
    p.domain_policy.names.push("bad name".into());
    assert!(p.check().is_err());
    let p: ProfileSettings = serde_json::from_str(r#"{"name":"x","protocol":"p12"}"#).unwrap();
    assert_eq!(p.key_types.len(), 6);
    assert!(
        serde_json::from_str::<ProfileSettings>(r#"{"name":"x","protocol":"p12","k":1}"#).is_err()
    );
    use RequestStatus::*;
    assert!(PendingApproval.may_become(Approved));
    assert!(Approved.may_become(Issued));
    assert!(!Rejected.may_become(Approved));
    assert!(!Issued.may_become(Issued));
    assert_eq!(
        RequestStatus::parse("pending_approval"),
        Some(PendingApproval)
    );
}
