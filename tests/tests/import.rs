//! End-to-end tests of CSV import through the real `idsync` binary.

use idsync_tests::{summary, Env};

const USERS: &str = "\
status,loginName,mail,firstName,lastName,language,validFrom,validTo,groups,costCenter
active,ann,ann@example.org,Ann,Smith,de-DE,20240101000000Z,20301231235959Z,,A1
active,bob,bob@example.org,Bob,,en,,,,A2
maybe,carl,carl@example.org,Carl,Doe,en,,,,A3
active,dora,dora@example.org,Dora,Diaz,english,,,,A4
active,eve,eve@example.org,Eve,Evans,fr_FR,20240230000000Z,,,A5
active,ann2,ANN@example.org,Ann,Again,,,,,A6
inactive,fred,fred@example.org,Fred,Fox,,,,,A7
active,gina,gina@example.org,Gina,Gray,,,,NoSuchGroup,A8
";

/// A header after blank lines is named on its own line, not on line 1.
#[test]
fn a_bad_header_after_blank_lines_is_named_on_its_own_line() {
    let env = Env::new();
    let file = env.file(
        "users.csv",
        "\n\nstatus,loginName,mail\nactive,ann,ann@example.org\n",
    );
    let (code, report) = env.import("users", &file, &[]);
    assert_ne!(code, 0, "{report}");
    let error = report["error"].as_str().unwrap_or_default();
    assert!(error.starts_with("line 3: "), "{report}");
}

#[test]
fn mixed_rows_are_reported_row_by_row_with_line_column_and_rule() {
    let env = Env::new();
    let file = env.file("users.csv", USERS);
    let (code, report) = env.import("users", &file, &[]);
    assert_eq!(code, 3, "some rows rejected: exit 3");
    assert_eq!(summary(&report), (2, 0, 0, 6));
    assert_eq!(report["outcome"], "partial");
    assert_eq!(report["warnings"][0], "unknown column `costCenter` ignored");

    let rejected = report["rejected"].as_array().unwrap();
    let by_line = |line: u64| {
        rejected
            .iter()
            .find(|r| r["line"] == line)
            .unwrap_or_else(|| panic!("line {line} rejected in {report}"))
    };
    let expect = [
        (3, Some(5), "lastName", "mandatory"),
        (4, Some(1), "status", "status"),
        (5, Some(6), "language", "language"),
        (6, Some(7), "validFrom", "zulu_timestamp"),
        (7, Some(3), "mail", "duplicate_in_file"),
        (9, Some(9), "groups", "unknown_group"),
    ];
    for (line, column, attribute, rule) in expect {
        let r = by_line(line);
        assert_eq!(
            r["column"].as_u64(),
            column.map(|c: u64| c),
            "column of line {line}: {r}"
        );
        assert_eq!(r["attribute"], attribute, "{r}");
        assert_eq!(r["rule"], rule, "{r}");
        assert!(!r["message"].as_str().unwrap().is_empty());
    }
    assert_eq!(by_line(7)["value"], "ANN@example.org");
    assert!(by_line(7)["message"].as_str().unwrap().contains("line 2"));

    // The created table lists the two good rows; the store holds exactly them.
    let created: Vec<&str> = report["created"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["key"].as_str().unwrap())
        .collect();
    assert_eq!(created, ["ann@example.org", "fred@example.org"]);
    let users = env.list("users");
    assert_eq!(users.len(), 2);
    let ann = env.show("users", "ann@example.org").unwrap();
    assert_eq!(ann["source"], "CSV");
    assert_eq!(
        ann["roles"],
        serde_json::json!(["Self-Service", "Operator", "Approval"])
    );
    assert_eq!(ann["validTo"], "20301231235959Z");
    assert_eq!(env.show("users", "fred").unwrap()["status"], "inactive");

    // The CSV report is a table a person opens in a spreadsheet.
    let csv = std::fs::read_to_string(report_csv(&env)).unwrap();
    assert!(csv.starts_with("outcome,line,key,id,changed,column,attribute,value,rule,message"));
    assert_eq!(csv.lines().count(), 1 + 2 + 6);
}

fn report_csv(env: &Env) -> std::path::PathBuf {
    let dir = env.data_dir().join("reports");
    let mut csvs: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".report.csv"))
        .collect();
    csvs.sort();
    csvs.pop().expect("a CSV report")
}

#[test]
fn importing_the_same_file_twice_changes_nothing_the_second_time() {
    let env = Env::new();
    let file = env.file("users.csv", USERS);
    env.import("users", &file, &[]);
    let log_before = env.changes();
    let (code, report) = env.import("users", &file, &[]);
    assert_eq!(code, 3);
    assert_eq!(summary(&report), (0, 0, 2, 6), "{report}");
    assert!(report["created"].as_array().unwrap().is_empty());
    let log_after = env.changes();
    assert_eq!(log_before.len(), 2);
    assert_eq!(
        log_after, log_before,
        "a no-op import writes no change event"
    );
}

#[test]
fn users_are_updated_by_mail_whatever_its_case() {
    let env = Env::new();
    let first = env.file(
        "a.csv",
        "status,mail,lastName,firstName\nactive,Ann.Smith@Example.org,Smith,Ann\n",
    );
    let (_, r1) = env.import("users", &first, &[]);
    let id = r1["created"][0]["id"].clone();
    let second = env.file(
        "b.csv",
        "status,mail,lastName,firstName\ninactive,ann.smith@EXAMPLE.ORG,Smith-Jones,Ann\n",
    );
    let (code, r2) = env.import("users", &second, &[]);
    assert_eq!(code, 0);
    assert_eq!(summary(&r2), (0, 1, 0, 0));
    let updated = &r2["updated"][0];
    assert_eq!(updated["id"], id, "the same user, not a new one");
    assert_eq!(
        updated["changed"],
        serde_json::json!(["lastName", "mail", "status"])
    );
    let users = env.list("users");
    assert_eq!(users.len(), 1);
    assert_eq!(users[0]["lastName"], "Smith-Jones");
    assert_eq!(users[0]["meta"]["version"], 2);
    let log = env.changes();
    assert_eq!(log.len(), 2);
    assert_eq!(log[1]["operation"], "updated");
    assert_eq!(log[1]["actor"]["name"], "b.csv");
    assert_eq!(log[1]["actor"]["line"], 2);
    assert_eq!(log[1]["source"], "CSV");
}

/// A loginName whose first letter is one bit from another row's mail
/// (`c`/`b`) is not that mail: the in-file table once tagged its keys by
/// flipping the same bits the first letter sets (found by fuzzing).
#[test]
fn a_login_name_one_bit_from_another_rows_mail_is_not_a_duplicate() {
    let env = Env::new();
    let file = env.file(
        "users.csv",
        "status,mail,loginName,lastName
\
         active,bob@example.org,bob,B
\
         active,carol@example.org,cob@example.org,C
",
    );
    let (code, r) = env.import("users", &file, &[]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(summary(&r), (2, 0, 0, 0), "{r}");
}

#[test]
fn login_names_are_unique_in_the_store() {
    let env = Env::new();
    let a = env.file(
        "a.csv",
        "status,mail,loginName,lastName\nactive,a@example.org,alex,A\n",
    );
    env.import("users", &a, &[]);
    let b = env.file(
        "b.csv",
        "status,mail,loginName,lastName\nactive,b@example.org,ALEX,B\n",
    );
    let (code, r) = env.import("users", &b, &[]);
    assert_eq!(code, 4, "every row rejected: the file is rejected");
    assert_eq!(r["rejected"][0]["rule"], "not_unique");
    assert_eq!(r["rejected"][0]["attribute"], "loginName");
}

#[test]
fn the_seed_asset_row_imports_and_waits_for_its_profile() {
    let seed = r#""","Windows Server 2008","Asset to manage windows server information","Server","","Certificate Profile Server P12","Nexus","SE",",,","","S-1-5-21-1721254763-462695806-1538882281-2605462""#;
    let env = Env::new();
    let file = env.file("assets.csv", format!("{seed}\r\n"));
    let (code, r) = env.import("assets", &file, &[]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(summary(&r), (1, 0, 0, 0));
    let asset = env.show("assets", "Windows Server 2008").unwrap();
    assert_eq!(asset["state"], "pending", "its profile does not exist");
    assert_eq!(
        asset["certificateProfile"],
        "Certificate Profile Server P12"
    );
    assert_eq!(asset["country"], "SE");
    assert!(
        asset.get("dnsNames").is_none(),
        "\",,\" is an empty list, and empty lists are not stored"
    );
    assert_eq!(
        asset["sid"],
        "S-1-5-21-1721254763-462695806-1538882281-2605462"
    );

    // Creating the profile makes the asset active (seed 000).
    let cfg = env.file(
        "idsync.toml",
        "[[profiles]]\nname = \"Certificate Profile Server P12\"\nprotocol = \"p12\"\n",
    );
    let out = env
        .command()
        .arg("--config")
        .arg(&cfg)
        .args(["show", "assets", "Windows Server 2008"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let asset: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(asset["state"], "active");
    assert_eq!(asset["meta"]["version"], 2);

    // Re-importing updates the existing asset (matched by name).
    let changed = seed.replace("\"SE\"", "\"DK\"");
    let file = env.file("assets2.csv", changed);
    let out = env
        .command()
        .arg("--config")
        .arg(&cfg)
        .args(["import", "assets"])
        .arg(&file)
        .args(["--format", "json"])
        .output()
        .unwrap();
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary(&r), (0, 1, 0, 0), "{r}");
    assert_eq!(r["updated"][0]["changed"], serde_json::json!(["country"]));
}

#[test]
fn headerless_assets_are_strict_about_blanks_and_field_count() {
    let env = Env::new();
    let file = env.file(
        "assets.csv",
        "\"\",\"web-1\",\"\",\"Server\",\"\",\"\",\"\",\"SE\",\"web-1.example.org,www.example.org\",\"10.0.0.1\",\"\"\n\
         \"\", \"web-2\",\"\",\"Server\",\"\",\"\",\"\",\"SE\",\"\",\"\",\"\"\n\
         \"\",\"web-3\",\"\"\n",
    );
    let (code, r) = env.import("assets", &file, &[]);
    assert_eq!(code, 3);
    assert_eq!(summary(&r), (1, 0, 0, 2));
    assert_eq!(r["rejected"][0]["rule"], "surrounding_blank");
    assert_eq!(r["rejected"][0]["column"], 2);
    assert_eq!(r["rejected"][1]["rule"], "field_count");
    let web1 = env.show("assets", "web-1").unwrap();
    assert_eq!(
        web1["dnsNames"],
        serde_json::json!(["web-1.example.org", "www.example.org"])
    );
    assert_eq!(web1["ipAddresses"], serde_json::json!(["10.0.0.1"]));

    // Lenient mode trims the blank.
    let (code, r) = env.import("assets", &file, &["--lenient"]);
    assert_eq!(code, 3);
    assert_eq!(summary(&r), (1, 0, 1, 1), "{r}");
    assert!(env.show("assets", "web-2").is_some());
}

#[test]
fn groups_must_exist_and_members_are_kept_on_both_sides() {
    let env = Env::new();
    let users = env.file("u.csv", "status,mail,loginName,lastName\nactive,ann@example.org,ann,A\nactive,bob@example.org,bob,B\n");
    env.import("users", &users, &[]);
    let groups = env.file(
        "g.csv",
        "displayName;description;members\nAdmins;The admins;ann|bob@example.org\nEmpty;;\nAdmins;again;\nBad;;nobody\n",
    );
    let (code, r) = env.import("groups", &groups, &[]);
    assert_eq!(code, 3, "{r}");
    assert_eq!(summary(&r), (2, 0, 0, 2));
    assert_eq!(r["rejected"][0]["rule"], "duplicate_in_file");
    assert_eq!(r["rejected"][1]["rule"], "unknown_member");
    let admins = env.show("groups", "admins").unwrap();
    assert_eq!(
        admins["members"],
        serde_json::json!(["ann@example.org", "bob@example.org"])
    );
    let gid = admins["id"].clone();
    assert_eq!(
        env.show("users", "ann").unwrap()["groups"],
        serde_json::json!([gid])
    );

    // A user row names its groups in one cell (default separator `|`).
    let users2 = env.file(
        "u2.csv",
        "status,mail,lastName,groups\nactive,ann@example.org,A,Empty|admins\nactive,bob@example.org,B,\nactive,cid@example.org,C,Nope\n",
    );
    let (_, r) = env.import("users", &users2, &[]);
    assert_eq!(summary(&r), (0, 2, 0, 1), "{r}");
    assert_eq!(r["rejected"][0]["value"], "Nope");
    assert_eq!(
        env.show("groups", "Admins").unwrap()["members"],
        serde_json::json!(["ann@example.org"])
    );
    assert_eq!(
        env.show("groups", "Empty").unwrap()["members"],
        serde_json::json!(["ann@example.org"])
    );

    // Replacing a group's members removes the ones not listed.
    let version = |env: &Env| {
        env.show("groups", "Admins").unwrap()["meta"]["version"]
            .as_u64()
            .unwrap()
    };
    let before = version(&env);
    let groups2 = env.file("g2.csv", "displayName,members\nAdmins,bob\n");
    let (_, r) = env.import("groups", &groups2, &[]);
    assert_eq!(r["updated"][0]["changed"], serde_json::json!(["members"]));
    assert_eq!(
        version(&env),
        before + 1,
        "a membership change moves the group's version (its ETag)"
    );
    assert_eq!(
        env.show("groups", "Admins").unwrap()["members"],
        serde_json::json!(["bob@example.org"])
    );
    let ann_groups = env.show("users", "ann").unwrap()["groups"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(ann_groups, 1);
}

#[test]
fn an_atomic_import_applies_all_rows_or_none() {
    let env = Env::new();
    let file = env.file(
        "u.csv",
        "status,mail,lastName\nactive,a@example.org,A\nactive,b@example.org,\n",
    );
    let (code, r) = env.import("users", &file, &["--atomic"]);
    assert_eq!(code, 4);
    assert_eq!(r["outcome"], "rejected");
    assert_eq!(r["applied"], false);
    assert!(r["error"].as_str().unwrap().contains("nothing applied"));
    assert!(env.list("users").is_empty());
    assert!(env.changes().is_empty());

    let good = env.file(
        "ok.csv",
        "status,mail,lastName\nactive,a@example.org,A\nactive,b@example.org,B\n",
    );
    let (code, r) = env.import("users", &good, &["--atomic"]);
    assert_eq!((code, summary(&r)), (0, (2, 0, 0, 0)));
}

#[test]
fn a_dry_run_reports_without_writing() {
    let env = Env::new();
    let file = env.file(
        "u.csv",
        "status,mail,lastName\nactive,a@example.org,A\nactive,a@example.org,A\n",
    );
    let (code, r) = env.import("users", &file, &["--dry-run"]);
    assert_eq!(code, 3);
    assert_eq!(r["dryRun"], true);
    assert_eq!(r["applied"], false);
    assert_eq!(summary(&r), (1, 0, 0, 1));
    assert!(env.list("users").is_empty());
}

#[test]
fn a_file_that_is_not_utf8_is_refused_whole_naming_line_and_column() {
    let env = Env::new();
    let mut bytes =
        b"status,mail,lastName\nactive,a@example.org,A\nactive,b@example.org,M\xFCller\n".to_vec();
    bytes.extend_from_slice(b"active,c@example.org,C\n");
    let file = env.file("latin1.csv", bytes);
    let (code, r) = env.import("users", &file, &[]);
    assert_eq!(code, 4);
    let err = r["error"].as_str().unwrap();
    assert!(err.contains("line 3, column 3"), "{err}");
    assert!(err.contains("UTF-8"), "{err}");
    assert!(
        env.list("users").is_empty(),
        "nothing of a refused file is applied"
    );
}

#[test]
fn semicolons_bom_crlf_and_quoted_newlines() {
    let env = Env::new();
    let file = env.file(
        "u.csv",
        "\u{feff}status;mail;lastName;displayName\r\nactive;a@example.org;\"O;Brien\";\"A \"\"B\"\"\"\r\n\
         active;b@example.org;B;\"two\r\nlines\"\r\n\r\nactive;c@example.org;C;x\r\n",
    );
    let (code, r) = env.import("users", &file, &[]);
    assert_eq!(code, 3, "{r}");
    let a = env.show("users", "a@example.org").unwrap();
    assert_eq!(a["lastName"], "O;Brien");
    assert_eq!(a["displayName"], "A \"B\"");
    // A name with a line break is refused; lines are those an editor shows.
    assert_eq!(r["rejected"][0]["line"], 3);
    assert_eq!(r["rejected"][0]["rule"], "control_character");
    assert_eq!(
        r["created"][1]["line"], 6,
        "after a quoted line break and a blank line"
    );

    // Free text (a group's description) may span lines.
    let groups = env.file(
        "g.csv",
        "displayName,description\r\nOps,\"line one\r\nline two\"\r\n",
    );
    let (code, r) = env.import("groups", &groups, &[]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(
        env.show("groups", "Ops").unwrap()["description"],
        "line one\r\nline two"
    );
}

#[test]
fn a_missing_mandatory_column_refuses_the_file() {
    let env = Env::new();
    let file = env.file("u.csv", "mail,lastName\na@example.org,A\n");
    let (code, r) = env.import("users", &file, &[]);
    assert_eq!(code, 4);
    assert!(r["error"].as_str().unwrap().contains("`status`"), "{r}");
}

#[test]
fn configured_rules_exclude_lists_end_state_match_key_and_application() {
    let env = Env::with_config(
        "[users]\nmatch_key = \"loginName\"\ndefault_roles = [\"Reader\"]\ngroup_separator = \";\"\n\
         [users.exclude]\nlastName = [\"Test\"]\n[import]\nend_state = \"inactive\"\n",
    );
    let file = env.file("u.csv", "status,loginName,mail,lastName\nactive,ann,ann@example.org,Smith\nactive,tom,tom@example.org,TEST\n");
    let (code, r) = env.import("users", &file, &["--application", "portal"]);
    assert_eq!(code, 3);
    assert_eq!(r["rejected"][0]["rule"], "excluded");
    let ann = env.show("users", "ann").unwrap();
    assert_eq!(ann["status"], "inactive", "end_state forces the status");
    assert_eq!(ann["roles"], serde_json::json!(["Reader"]));
    assert_eq!(ann["applications"], serde_json::json!(["portal"]));

    // Matched by loginName: a new mail updates the same user.
    let file = env.file(
        "u2.csv",
        "status,loginName,mail,lastName\nactive,ann,ann.smith@example.org,Smith\n",
    );
    let (_, r) = env.import("users", &file, &["--end-state", "active"]);
    assert_eq!(summary(&r), (0, 1, 0, 0), "{r}");
    assert_eq!(
        env.show("users", "ann").unwrap()["mail"],
        "ann.smith@example.org"
    );
}

#[test]
fn report_cells_that_look_like_formulas_are_neutralised() {
    let env = Env::new();
    let file = env.file(
        "u.csv",
        "status,mail,lastName\nactive,=cmd|' /C calc'!A0,x\n",
    );
    let (_, _) = env.import("users", &file, &[]);
    let csv = std::fs::read_to_string(report_csv(&env)).unwrap();
    assert!(csv.contains("'=cmd"), "{csv}");
    assert!(!csv.contains(",=cmd"), "{csv}");
}

#[test]
fn check_config_explains_errors() {
    let env = Env::with_config("[store]\nengine = \"postgres\"\n");
    let out = env.run(&["check-config"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("postgres"), "{err}");
    let ok = Env::new().run(&["check-config"]);
    assert!(ok.status.success());
}

/// The first hour's rough edges of the one-shot commands: a table has a
/// header, a cut list says so, times are RFC 3339, `import` offers only
/// the kinds a CSV file can hold, and check-config names the engine as the
/// configuration writes it.
#[test]
fn the_one_shot_commands_say_what_they_print() {
    let env = Env::new();
    let users = env.file(
        "u.csv",
        "status,mail,lastName\nactive,a@example.org,A\nactive,b@example.org,B\nactive,c@example.org,C\n",
    );
    assert_eq!(env.import("users", &users, &[]).0, 0);

    let out = env.run(&["list", "users"]);
    let table = String::from_utf8_lossy(&out.stdout);
    let mut lines = table.lines();
    assert_eq!(
        lines.next(),
        Some("id\tmail\tloginName\tlastName\tstatus"),
        "{table}"
    );
    assert_eq!(lines.count(), 3, "{table}");

    let out = env.run(&["changes", "--limit", "2"]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 2);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("2 events shown") && err.contains("--after 2") && err.contains("1 more"),
        "{err}"
    );
    let out = env.run(&["changes"]);
    assert!(out.stderr.is_empty(), "nothing cut, nothing said");

    let out = env.run(&["import", "profiles", users.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "a usage error");
    assert!(String::from_utf8_lossy(&out.stderr).contains("users, groups, assets"));
    let help = env.run(&["import", "--help"]);
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        !help.contains("profiles") && help.contains("The CSV file"),
        "{help}"
    );

    let out = env.run(&["check-config"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("store.engine=redb,"), "{said}");

    // JSON keeps the group ids and adds their names, in the same order.
    let groups = env.file("g.csv", "displayName\nStaff\nOps\n");
    assert_eq!(env.import("groups", &groups, &[]).0, 0);
    let member = env.file(
        "m.csv",
        "status,mail,lastName,groups\nactive,a@example.org,A,Ops|Staff\n",
    );
    assert_eq!(env.import("users", &member, &[]).0, 0);
    let a = env
        .list("users")
        .into_iter()
        .find(|u| u["mail"] == "a@example.org")
        .unwrap();
    assert_eq!(a["groups"].as_array().unwrap().len(), 2, "{a}");
    assert_eq!(a["groupNames"], serde_json::json!(["Ops", "Staff"]), "{a}");
}
