//! What README.md promises stays true.

use crate::support::sign;

fn repo_file(rel: &str) -> String {
    std::fs::read_to_string(format!("{}/../{rel}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

#[test]
fn readme_curl_signature_matches_the_sample_payload() {
    let readme = repo_file("README.md");
    let body = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/github-issue-opened.json"
    ))
    .unwrap();
    let expected = sign::github("quickstart-secret", &body);
    assert!(
        readme.contains(&format!("X-Hub-Signature-256: {expected}")),
        "README's curl line must carry {expected}"
    );
}

#[test]
fn ci_runs_the_readme_test_command() {
    let readme = repo_file("README.md");
    let ci = repo_file(".ci/run");
    let test_cmd = readme
        .lines()
        .skip_while(|l| !l.starts_with("# 2. Run every test"))
        .nth(1)
        .expect("README's set-up block names the test command")
        .trim();
    assert!(
        ci.lines().any(|l| l.trim() == test_cmd),
        ".ci/run must run {test_cmd:?}"
    );
}
