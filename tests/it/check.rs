//! `hookgate check` reports every problem with the path of its key.

use std::process::Command;

fn check(yaml: &str, env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hookgate.yaml");
    std::fs::write(&path, yaml).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hookgate"));
    cmd.args(["check", "--config"])
        .arg(&path)
        .env_remove("HOOKGATE_TEST_MISSING");
    for (k, v) in env {
        cmd.env(k, v);
    }
    // `hookgate check` loads every plugin under its load-time deadline; the
    // test's own deadline is a backstop against a hang. Its output is a
    // few lines, well within the pipes' buffers while it runs.
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("hookgate check did not finish within 120 s");
        }
        #[expect(
            clippy::disallowed_methods,
            reason = "a plain #[test] on its own thread, no runtime to block"
        )]
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let out = child.wait_with_output().unwrap();
    (
        status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn typo_wrong_type_and_missing_env_var_are_all_reported() {
    let (code, _, err) = check(
        r#"
listen: 127.0.0.1:0
destinations:
  teams: { url: "https://example.invalid/hook", timeout: 10 }
routes:
  github:
    verfy: { plugin: github }
    transform:
      - { plugin: github-teams, with: { card: "${HOOKGATE_TEST_MISSING}" } }
    to: [teams]
"#,
        &[],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("routes.github.verfy: unknown key"), "{err}");
    assert!(err.contains("destinations.teams.timeout:"), "{err}");
    assert!(
        err.contains("routes.github.transform[0].with.card: environment variable HOOKGATE_TEST_MISSING is not set"),
        "{err}"
    );
}

#[test]
fn unknown_plugin_is_reported_at_its_key() {
    let (code, _, err) = check(
        "routes:\n  a:\n    verify: { plugin: no-such-plugin }\n",
        &[],
    );
    assert_eq!(code, Some(1));
    assert!(
        err.contains("routes.a.verify.plugin: no plugin named \"no-such-plugin\""),
        "{err}"
    );
}

#[test]
fn malformed_yaml_is_reported() {
    let (code, _, err) = check("routes: [unclosed\n", &[]);
    assert_eq!(code, Some(1));
    assert!(err.contains("invalid YAML"), "{err}");
}

#[test]
fn the_quickstart_config_is_valid() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/quickstart.yaml");
    let out = Command::new(env!("CARGO_BIN_EXE_hookgate"))
        .args(["check", "--config", path])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn env_vars_are_interpolated() {
    let (code, out, err) = check(
        "admin: { token: ${HOOKGATE_TEST_TOKEN} }\nroutes:\n  a:\n    verify: { plugin: github, with: { secret: \"${HOOKGATE_TEST_TOKEN}\" } }\n",
        &[(
            "HOOKGATE_TEST_TOKEN",
            "abcdefghijklmnopqrstuvwxyz-0123456789",
        )],
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("ok"), "{out}");
}

#[test]
fn shipped_json_schema_is_up_to_date() {
    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/hookgate.schema.json"
    ))
    .expect("gateway/hookgate.schema.json exists (hookgate schema > gateway/hookgate.schema.json)");
    let current = serde_json::to_string_pretty(hookgate::config::json_schema()).unwrap();
    assert_eq!(
        shipped.trim(),
        current.trim(),
        "regenerate with: cargo run -p hookgate -- schema > gateway/hookgate.schema.json"
    );
}

#[test]
fn an_empty_admin_token_is_a_config_error_naming_the_key() {
    let (code, _, err) = check(
        "admin: { token: ${HOOKGATE_TEST_TOKEN} }\n",
        &[("HOOKGATE_TEST_TOKEN", "")],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("admin.token: must be at least 32 bytes"),
        "{err}"
    );
}

#[test]
fn a_subscribers_destination_without_a_tenant_is_a_config_error() {
    let (code, _, err) = check(
        r#"
subscriptions: { api_keys: { tenant-a: "0123456789abcdef" } }
destinations:
  subs: { kind: subscribers, object_type: Repository, object_id: /repository/full_name }
routes:
  github: { to: [subs] }
"#,
        &[],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("destinations.subs.tenant: is required"),
        "{err}"
    );
}

/// One run shows every problem a start would refuse once the config has
/// its shape: keys that disagree with each other, TLS files and what the
/// plugins say about their `with:` blocks, each once.
#[test]
fn problems_across_keys_and_in_plugins_are_reported_in_one_run() {
    let (code, _, err) = check(
        r#"
store: { engine: postgres, url: "postgres://hg@db.example/h?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem" }
destinations:
  d: { kind: log }
routes:
  r1:
    verify: { plugin: hmac, with: { secret: abc, header: X-Sig, algorithm: sha999 } }
    to: [d, nope]
  r2:
    verify: { plugin: no-such-plugin }
    transform: [ { plugin: github-teams, with: { card: bogus } } ]
"#,
        &[],
    );
    assert_eq!(code, Some(1), "{err}");
    for says in [
        "5 problem(s)",
        "routes.r1.to[1]: no destination named \"nope\"",
        "store.url: sslrootcert /nonexistent/ca.pem",
        "routes.r1.verify.with.algorithm: unknown variant `sha999`",
        "routes.r2.verify.plugin: no plugin named \"no-such-plugin\"",
        "routes.r2.transform[0].with.card: must be message-card or adaptive",
    ] {
        assert!(err.contains(says), "{says:?} in {err}");
    }
    for line in err.lines().skip(1) {
        assert_eq!(err.matches(line).count(), 1, "{line:?} is said once: {err}");
    }

    // A limit the plugins would load under that is out of range keeps them
    // from loading: the other problems across keys are still all there.
    let (code, _, err) = check(
        r#"
routes:
  r1:
    verify: { plugin: github, timeout: 100000000000d }
    transform: [ { plugin: github-teams, with: { card: bogus } } ]
    to: [nope]
"#,
        &[],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("2 problem(s)"), "{err}");
    assert!(err.contains("routes.r1.verify.timeout:"), "{err}");
    assert!(err.contains("routes.r1.to[0]: no destination"), "{err}");
}

#[test]
fn a_bad_key_in_a_with_block_is_named_by_check() {
    let (code, _, err) = check(
        r#"
routes:
  gh:
    verify: { plugin: github, with: { secert: oops } }
"#,
        &[],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("routes.gh.verify.with.secert: unknown key"),
        "{err}"
    );
}

/// Values a plugin cannot use fail the load at their key (each plugin's
/// `check:` runs the code that reads its settings), rather than passing
/// `check` and failing every request with 500.
#[test]
fn a_bad_value_in_a_with_block_is_named_by_check() {
    let (code, out, err) = check(
        r#"
destinations:
  d: { kind: log }
routes:
  r1:
    verify: { plugin: hmac, with: { secret: abc, header: X-Sig, algorithm: sha999 } }
    transform: [ { plugin: template, with: { template: "{{ unclosed" } } ]
    route: { plugin: by-event, with: { rules: [ { to: d }, { to: d, event: 3, equal: x } ] } }
    to: [d]
  r2:
    verify: { plugin: github, with: { secret: abc, allow_sha1: maybe } }
    transform: [ { plugin: github-teams, with: { card: bogus } } ]
    to: [d]
  r3:
    verify: { plugin: stripe, with: { secret: abc, tolerance: -5 } }
    to: [d]
  r4:
    verify: { plugin: teams-outgoing, with: { secret: "not base64!" } }
    to: [d]
  r5:
    verify: { plugin: github }
    to: [d]
  r6:
    verify: { plugin: gitlab, with: { signing_token: "whsec_not base64!" } }
    to: [d]
  r7:
    verify: { plugin: token, with: { secret: s, param: code, header: x-code } }
    to: [d]
"#,
        &[],
    );
    assert_eq!(code, Some(1), "{out}{err}");
    for expected in [
        "routes.r1.verify.with.algorithm: unknown variant `sha999`",
        "routes.r1.transform[0].with.template: does not compile (line 1)",
        "routes.r1.route.with.rules: item 2:",
        "routes.r2.verify.with.allow_sha1: must be true or false, not \"maybe\"",
        "routes.r2.transform[0].with.card: must be message-card or adaptive, not \"bogus\"",
        "routes.r3.verify.with.tolerance: must be a whole number, not \"-5\"",
        "routes.r4.verify.with.secret: must be the base64 security token",
        "routes.r5.verify.with.secret: is required",
        "routes.r6.verify.with.signing_token: must be a whsec_<base64> signing token",
        "routes.r7.verify.with: name one place for the secret",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
    assert!(err.contains("10 problem(s)"), "{err}");
}

/// The same plugins with good values pass, including a use the check cannot
/// tell from another stage's (salesforce's transform takes no keys).
#[test]
fn good_values_in_with_blocks_pass_check() {
    let (code, out, err) = check(
        r#"
destinations:
  d: { kind: log }
routes:
  r1:
    verify: { plugin: hmac, with: { secret: abc, header: X-Sig, algorithm: sha512, encoding: base64, tolerance: 60, signed: "{timestamp}.{body}", timestamp_header: X-Ts } }
    transform: [ { plugin: template, with: { template: '{"text": {{ body.action | tojson }}}', undefined: strict } } ]
    route: { plugin: by-event, with: { rules: [ { to: d, event: "issues*" } ], mode: all } }
    to: [d]
  r2:
    verify: { plugin: github, with: { secret: abc, allow_sha1: true } }
    transform: [ { plugin: github-teams, with: { card: adaptive } } ]
    to: [d]
  r3:
    verify: { plugin: teams-outgoing, with: { secret: "c2VjcmV0", card_template: '{"type": "AdaptiveCard", "body": []}' } }
    to: [d]
  r4:
    verify: { plugin: salesforce, with: { organization_id: 00D000000000062, secret: s } }
    transform: [ { plugin: salesforce } ]
    to: [d]
  r5:
    verify: { plugin: standard-webhooks, with: { secret: [ "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" ], tolerance: 120 } }
    to: [d]
"#,
        &[],
    );
    assert_eq!(code, Some(0), "{out}{err}");
}

#[test]
fn a_worker_count_that_is_not_a_positive_number_is_refused_by_name() {
    for bad in ["0", "many", ""] {
        let (code, _, stderr) = check("routes: {}\n", &[("TOKIO_WORKER_THREADS", bad)]);
        assert_eq!(code, Some(1), "TOKIO_WORKER_THREADS={bad:?}: {stderr}");
        assert!(
            stderr.contains("TOKIO_WORKER_THREADS must be a positive number"),
            "TOKIO_WORKER_THREADS={bad:?}: {stderr}"
        );
    }
    let (code, _, stderr) = check("routes: {}\n", &[("TOKIO_WORKER_THREADS", "2")]);
    assert_eq!(code, Some(0), "{stderr}");
}

/// A destination's TLS files are read by `check`, from the config file's
/// directory, and a problem is reported at the key that names the file.
#[test]
fn a_destinations_tls_files_are_read_by_check_at_their_keys() {
    let (code, _, err) = check(
        "destinations:\n  d: { url: \"https://x.example\", tls: { ca_file: ca.pem } }\n\
         routes:\n  r: { to: [d] }\n",
        &[],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("destinations.d.tls.ca_file")
            && err.contains("ca.pem")
            && err.contains("cannot read"),
        "{err}"
    );
    let (code, _, err) = check(
        "destinations:\n  d: { url: \"http://x.example\", tls: { client_cert_file: c.pem } }\n\
         routes:\n  r: { to: [d] }\n",
        &[],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("destinations.d.tls: the destination's url is not https")
            && err
                .contains("destinations.d.tls.client_key_file: is required with client_cert_file"),
        "{err}"
    );
}

#[test]
fn tls_files_the_store_url_names_are_read_by_check() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing-ca.pem");
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let config = |query: &str| {
        format!(
            "listen: 127.0.0.1:0\n\
             store: {{ engine: postgres, url: \"postgres://hg:${{HOOKGATE_TEST_PG_PASSWORD}}@db.example/h?{query}\" }}\n"
        )
    };
    let env = [("HOOKGATE_TEST_PG_PASSWORD", "s3cr3t-password")];
    for (query, says) in [
        (
            format!("sslmode=verify-full&sslrootcert={}", missing.display()),
            format!("sslrootcert {}", missing.display()),
        ),
        (
            format!("sslmode=verify-full&sslrootcert={}", empty.display()),
            "no usable CA certificate".to_owned(),
        ),
        (
            format!(
                "sslmode=require&sslcert={}&sslkey={}",
                missing.display(),
                empty.display()
            ),
            format!("sslcert {}", missing.display()),
        ),
    ] {
        let (code, _, err) = check(&config(&query), &env);
        assert_eq!(code, Some(1), "{query}: {err}");
        assert!(
            err.contains("store.url") && err.contains(&says),
            "{query}: {err}"
        );
        assert!(!err.contains("s3cr3t"), "{err}");
    }
    // A usable root file (the built-in roots) passes.
    let (code, out, err) = check(&config("sslmode=verify-full&sslrootcert=system"), &env);
    assert_eq!(code, Some(0), "{out}{err}");
}
