//! `hookgate plugin new`: writes a project from the templates in
//! `templates/`, which are files of their own (compiled in with
//! `include_str!`) with `{{placeholders}}`.
//!
//! Every language's example does the same thing for its stage, so the
//! fixtures are shared: a verifier checks an HMAC-SHA256 `X-Signature`, a
//! transform turns a JSON event into a chat message, a router maps event
//! types to destinations.

use std::path::{Path, PathBuf};

use super::{AuthoringError, Lang, MANIFEST, StageName, io_at, is_plugin_name};

/// The plugin contract, copied into JavaScript and Python projects (their
/// tools read the WIT; Rust gets it through the SDK).
const WIT: &str = include_str!("../../../wit/plugin.wit");

const MANIFEST_TEMPLATE: &str = include_str!("templates/manifest.yaml");
const README: &str = include_str!("templates/README.md");
const GITIGNORE: &str = include_str!("templates/gitignore");

const RUST_CARGO: &str = include_str!("templates/rust/Cargo.toml");
const RUST_TOOLCHAIN: &str = include_str!("templates/rust/rust-toolchain.toml");
const RUST_VERIFY: &str = include_str!("templates/rust/verify.rs");
const RUST_TRANSFORM: &str = include_str!("templates/rust/transform.rs");
const RUST_ROUTE: &str = include_str!("templates/rust/route.rs");

const JS_PACKAGE: &str = include_str!("templates/js/package.json");
const JS_VERIFY: &str = include_str!("templates/js/verify.js");
const JS_TRANSFORM: &str = include_str!("templates/js/transform.js");
const JS_ROUTE: &str = include_str!("templates/js/route.js");

const PY_REQUIREMENTS: &str = include_str!("templates/python/requirements.txt");
const PY_VERIFY: &str = include_str!("templates/python/verify.py");
const PY_TRANSFORM: &str = include_str!("templates/python/transform.py");
const PY_ROUTE: &str = include_str!("templates/python/route.py");

/// (file under `fixtures/`, contents) for each stage.
const VERIFY_FIXTURES: &[(&str, &str)] = &[
    (
        "request.json",
        include_str!("templates/fixtures/verify/request.json"),
    ),
    (
        "signed.yaml",
        include_str!("templates/fixtures/verify/signed.yaml"),
    ),
    (
        "unsigned.yaml",
        include_str!("templates/fixtures/verify/unsigned.yaml"),
    ),
];
const TRANSFORM_FIXTURES: &[(&str, &str)] = &[
    (
        "order-paid.yaml",
        include_str!("templates/fixtures/transform/order-paid.yaml"),
    ),
    (
        "not-json.yaml",
        include_str!("templates/fixtures/transform/not-json.yaml"),
    ),
];
const ROUTE_FIXTURES: &[(&str, &str)] = &[
    (
        "billing.yaml",
        include_str!("templates/fixtures/route/billing.yaml"),
    ),
    (
        "no-rule.yaml",
        include_str!("templates/fixtures/route/no-rule.yaml"),
    ),
];

/// Overrides `HOOKGATE_PLUGIN_SDK`: where a Rust project finds the SDK.
pub const SDK_ENV: &str = "HOOKGATE_PLUGIN_SDK";

/// The SDK of the checkout this binary was built from.
const BUILT_FROM_SDK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../plugin-sdk");

/// Creates `parent/NAME` with a working plugin for `stage` in `lang`, and
/// returns its path. Refuses to touch a folder that already exists.
pub fn new_project(
    parent: &Path,
    name: &str,
    lang: Lang,
    stage: StageName,
) -> Result<PathBuf, AuthoringError> {
    if !is_plugin_name(name) {
        return Err(AuthoringError::Project(format!(
            "plugin name {name:?}: use lowercase letters, digits and dashes, starting with a letter (it becomes NAME.wasm and `plugin: NAME`)"
        )));
    }
    let dir = parent.join(name);
    if dir.exists() {
        return Err(AuthoringError::Project(format!(
            "{} already exists; choose another name or remove it",
            dir.display()
        )));
    }
    let sdk = match lang {
        Lang::Rust => Some(sdk_path()?),
        _ => None,
    };

    let (source_path, source, build_tool) = match (lang, stage) {
        (Lang::Rust, s) => (
            "src/lib.rs",
            pick(s, RUST_VERIFY, RUST_TRANSFORM, RUST_ROUTE),
            "cargo",
        ),
        (Lang::Js, s) => (
            "src/plugin.js",
            pick(s, JS_VERIFY, JS_TRANSFORM, JS_ROUTE),
            "componentize-js",
        ),
        (Lang::Python, s) => (
            "app.py",
            pick(s, PY_VERIFY, PY_TRANSFORM, PY_ROUTE),
            "componentize-py",
        ),
    };
    let sdk_text = sdk.as_ref().map(|p| p.display().to_string());
    let vars: &[(&str, &str)] = &[
        ("name", name),
        ("lang", lang.as_str()),
        ("lang_title", lang_title(lang)),
        ("stage", stage.as_str()),
        ("source", source_path),
        ("build_tool", build_tool),
        ("limits", limits_hint(lang)),
        ("sdk_path", sdk_text.as_deref().unwrap_or_default()),
    ];

    let mut files: Vec<(String, String)> = vec![
        (MANIFEST.into(), fill(MANIFEST_TEMPLATE, vars)),
        ("README.md".into(), fill(README, vars)),
        (".gitignore".into(), GITIGNORE.into()),
        (source_path.into(), fill(source, vars)),
    ];
    match lang {
        Lang::Rust => {
            files.push(("Cargo.toml".into(), fill(RUST_CARGO, vars)));
            files.push(("rust-toolchain.toml".into(), RUST_TOOLCHAIN.into()));
        }
        Lang::Js => {
            files.push(("package.json".into(), fill(JS_PACKAGE, vars)));
            files.push(("wit/plugin.wit".into(), WIT.into()));
        }
        Lang::Python => {
            files.push(("requirements.txt".into(), PY_REQUIREMENTS.into()));
            files.push(("wit/plugin.wit".into(), WIT.into()));
        }
    }
    let fixtures = match stage {
        StageName::Verify => VERIFY_FIXTURES,
        StageName::Transform => TRANSFORM_FIXTURES,
        StageName::Route => ROUTE_FIXTURES,
    };
    for (file, text) in fixtures {
        files.push((format!("fixtures/{file}"), (*text).into()));
    }

    for (rel, text) in &files {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io_at(parent))?;
        }
        std::fs::write(&path, text).map_err(io_at(&path))?;
    }
    Ok(dir)
}

/// Where Rust projects find `hookgate-plugin-sdk`: `$HOOKGATE_PLUGIN_SDK`,
/// else the checkout this binary was built from. Made absolute, so the
/// project can live anywhere.
fn sdk_path() -> Result<PathBuf, AuthoringError> {
    let candidate = std::env::var_os(SDK_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(BUILT_FROM_SDK));
    let manifest = candidate.join("Cargo.toml");
    if !manifest.is_file() {
        return Err(AuthoringError::Project(format!(
            "cannot find hookgate-plugin-sdk at {}: set {SDK_ENV} to the plugin-sdk/ folder of a hookgate checkout",
            candidate.display()
        )));
    }
    std::fs::canonicalize(&candidate).map_err(io_at(&candidate))
}

fn pick(
    stage: StageName,
    verify: &'static str,
    transform: &'static str,
    route: &'static str,
) -> &'static str {
    match stage {
        StageName::Verify => verify,
        StageName::Transform => transform,
        StageName::Route => route,
    }
}

fn lang_title(lang: Lang) -> &'static str {
    match lang {
        Lang::Rust => "Rust",
        Lang::Js => "JavaScript",
        Lang::Python => "Python",
    }
}

/// The manifest's limits lines: the embedded JS and Python runtimes start
/// with about 9 and 13 MiB of memory, inside the default 16 MiB cap but
/// with little room for big bodies, and a first call on a fresh instance
/// pays for faulting in that image.
fn limits_hint(lang: Lang) -> &'static str {
    match lang {
        Lang::Rust => "# timeout: 100ms\n# memory: 16MiB",
        Lang::Js | Lang::Python => {
            "# The embedded runtime (SpiderMonkey, CPython) starts with 9-13 MiB of\n\
             # memory, and its first call on a busy machine can take longer than the\n\
             # 100ms default: give it room here and on the route.\n\
             timeout: 1s\n\
             memory: 64MiB"
        }
    }
}

/// Replaces every `{{key}}` in `template`.
fn fill(template: &str, vars: &[(&str, &str)]) -> String {
    let mut out = template.to_owned();
    for (key, value) in vars {
        out = out.replace(&format!("{{{{{key}}}}}"), value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_placeholder_is_filled() {
        let dir = tempfile::tempdir().unwrap();
        for lang in [Lang::Js, Lang::Python] {
            for stage in [StageName::Verify, StageName::Transform, StageName::Route] {
                let name = format!("p-{}-{}", lang.as_str(), stage.as_str());
                let project = new_project(dir.path(), &name, lang, stage).unwrap();
                for entry in walk(&project) {
                    let text = std::fs::read_to_string(&entry).unwrap();
                    assert!(
                        !text.contains("{{"),
                        "{} has a placeholder left",
                        entry.display()
                    );
                }
                let manifest = super::super::Project::open(&project).unwrap().manifest;
                assert_eq!(manifest.name, name);
                assert_eq!(manifest.lang, lang);
                assert_eq!(manifest.stage, stage);
            }
        }
    }

    #[test]
    fn an_existing_folder_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("taken")).unwrap();
        let err = new_project(dir.path(), "taken", Lang::Js, StageName::Verify).unwrap_err();
        assert!(err.to_string().contains("already exists"), "{err}");
        assert!(new_project(dir.path(), "Bad_Name", Lang::Js, StageName::Verify).is_err());
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
        out
    }
}
