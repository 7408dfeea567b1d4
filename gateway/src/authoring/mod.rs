//! Plugin authoring: `hookgate plugin new | build | test`.
//!
//! A plugin project is a folder with a `hookgate-plugin.yaml` manifest (its
//! name, language and stage), the source, and `fixtures/*.yaml` (requests
//! or messages with what the plugin should make of them):
//!
//! - [`scaffold`] writes a new project from the templates in `templates/`
//!   (Rust on the SDK, JavaScript on componentize-js, Python on
//!   componentize-py);
//! - [`build`] runs the language's tool, names the file and line of a
//!   source error, and loads the component on the gateway's own plugin host
//!   to check it fits the `hookgate:plugin` world and implements its stage;
//!   `--install` copies it into a gateway's `plugins.dir`, where a running
//!   gateway picks it up by hot reload;
//! - [`runner`] runs the fixtures through [`crate::plugin`] exactly as a
//!   route would (same engine, same limits, same calls), and [`fixture`]
//!   says what a fixture is and checks its expectations.
//!
//! Deliberately not here: a second plugin host. Everything that runs a
//! component goes through [`crate::plugin::PluginEngine`].

pub mod build;
pub mod fixture;
pub mod runner;
pub mod scaffold;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::{ByteSize, Duration};
use crate::plugin::{PluginLimits, Stage};

/// The manifest's file name, in the project's root.
pub const MANIFEST: &str = "hookgate-plugin.yaml";

/// Where builds put their output (and the compiled-code cache).
pub const TARGET_DIR: &str = "target";

/// A plugin's language.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    /// Rust on `hookgate-plugin-sdk`, built with cargo.
    Rust,
    /// JavaScript, built with componentize-js (SpiderMonkey).
    Js,
    /// Python, built with componentize-py (CPython).
    Python,
}

impl Lang {
    /// How the manifest spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Lang::Rust => "rust",
            Lang::Js => "js",
            Lang::Python => "python",
        }
    }
}

/// The stage a project's plugin implements (the CLI's and the manifest's
/// spelling of [`Stage`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum StageName {
    /// Authenticate the raw request.
    Verify,
    /// Reshape a message.
    Transform,
    /// Choose destinations.
    Route,
}

impl From<StageName> for Stage {
    fn from(s: StageName) -> Self {
        match s {
            StageName::Verify => Stage::Verify,
            StageName::Transform => Stage::Transform,
            StageName::Route => Stage::Route,
        }
    }
}

impl StageName {
    /// How the manifest spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            StageName::Verify => "verify",
            StageName::Transform => "transform",
            StageName::Route => "route",
        }
    }
}

/// `hookgate-plugin.yaml`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestConfig {
    /// Plugin name: the file is installed as `NAME.wasm`, and routes use it
    /// as `plugin: NAME`.
    pub name: String,
    /// Source language.
    pub lang: Lang,
    /// The stage the plugin implements.
    pub stage: StageName,
    /// Deadline per call for `plugin test` (default `plugins.timeout`'s).
    #[serde(default)]
    pub timeout: Option<Duration>,
    /// Memory cap per instance for `plugin test` (default
    /// `plugins.memory`'s).
    #[serde(default)]
    pub memory: Option<ByteSize>,
}

impl ManifestConfig {
    /// The limits calls get: the gateway's defaults, overridden by the
    /// manifest as a route's `timeout:`/`memory:` would.
    pub fn limits(&self) -> PluginLimits {
        let defaults = PluginLimits::default();
        PluginLimits {
            timeout: self.timeout.map_or(defaults.timeout, |t| t.0),
            memory: self.memory.map_or(defaults.memory, |m| {
                usize::try_from(m.0).unwrap_or(usize::MAX)
            }),
        }
    }
}

/// Why an authoring command failed. Each message is meant for the person
/// at the terminal: it says what to do next.
#[derive(Debug, thiserror::Error)]
pub enum AuthoringError {
    /// Not a plugin project, or a manifest that does not parse.
    #[error("{0}")]
    Project(String),
    /// The language's tool is not installed.
    #[error("{tool} is not installed. Install it with:\n\n    {install}\n")]
    MissingTool {
        /// What is missing.
        tool: String,
        /// The exact command that installs it.
        install: String,
    },
    /// The build failed (the tool's own output has been shown).
    #[error("{0}")]
    Build(String),
    /// The component does not load on the gateway's host.
    #[error("{0}")]
    Check(String),
    /// Reading or writing a file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// An I/O error with the path it happened at.
pub(crate) fn io_at(path: &Path) -> impl FnOnce(std::io::Error) -> AuthoringError + '_ {
    move |source| AuthoringError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A plugin project on disk.
#[derive(Clone, Debug)]
pub struct Project {
    /// Its root folder.
    pub dir: PathBuf,
    /// Its manifest.
    pub manifest: ManifestConfig,
}

impl Project {
    /// Reads `dir/hookgate-plugin.yaml`.
    pub fn open(dir: &Path) -> Result<Self, AuthoringError> {
        let path = dir.join(MANIFEST);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            AuthoringError::Project(format!(
                "{}: {e}: not a plugin project (create one with `hookgate plugin new NAME --lang rust|js|python`)",
                path.display()
            ))
        })?;
        let manifest: ManifestConfig = serde_saphyr::from_str(&text)
            .map_err(|e| AuthoringError::Project(format!("{}: {e}", path.display())))?;
        if !is_plugin_name(&manifest.name) {
            return Err(AuthoringError::Project(format!(
                "{}: name {:?} must be letters, digits and dashes (it becomes NAME.wasm)",
                path.display(),
                manifest.name
            )));
        }
        Ok(Project {
            // Absolute: tools run with the project as their working
            // directory, and paths handed to them must still hold.
            dir: std::path::absolute(dir).map_err(io_at(dir))?,
            manifest,
        })
    }

    /// Where `plugin build` writes the component.
    pub fn component_path(&self) -> PathBuf {
        self.dir
            .join(TARGET_DIR)
            .join(format!("{}.wasm", self.manifest.name))
    }

    /// Where compiled code is cached between `plugin build` and `plugin
    /// test` runs (wasmtime's cache, keyed by the component's bytes).
    pub fn cache_dir(&self) -> PathBuf {
        self.dir.join(TARGET_DIR).join("hookgate-cache")
    }
}

/// A plugin name: what `plugins.dir/NAME.wasm` and routes accept, and a
/// valid package name in each language's tooling.
pub fn is_plugin_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_names_are_lowercase_words_with_dashes() {
        assert!(is_plugin_name("my-verifier"));
        assert!(is_plugin_name("v2"));
        assert!(!is_plugin_name("My"));
        assert!(!is_plugin_name("2fa"));
        assert!(!is_plugin_name("a_b"));
        assert!(!is_plugin_name("a-"));
        assert!(!is_plugin_name(""));
    }

    #[test]
    fn manifest_limits_override_the_defaults() {
        let m: ManifestConfig =
            serde_saphyr::from_str("name: x\nlang: js\nstage: verify\nmemory: 64MiB\n").unwrap();
        assert_eq!(m.limits().memory, 64 << 20);
        assert_eq!(m.limits().timeout, PluginLimits::default().timeout);
    }
}
