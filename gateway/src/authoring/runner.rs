//! `hookgate plugin test`: runs a project's fixtures through the gateway's
//! own plugin host ([`PluginEngine`] → [`LoadedPlugin`]), with the limits
//! the manifest gives (the gateway's defaults otherwise), exactly as a
//! route would call the plugin: `validate-config` on the `with:` block,
//! then the stage on a fresh instance with its deadline and memory cap.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::fixture::{self, FixtureConfig};
use super::{AuthoringError, Project, io_at};
use crate::plugin::{
    CallContext, LoadedPlugin, Message, PluginConfig, PluginEngine, PluginError, PluginSource,
    Stage, Verdict,
};

/// What a test run found.
#[derive(Debug, Default)]
pub struct Summary {
    /// Fixtures whose expectations held.
    pub passed: usize,
    /// Fixtures whose expectations did not hold, or that could not run.
    pub failed: usize,
}

impl Summary {
    /// The closing line: `N passed, N failed`.
    pub fn line(&self) -> String {
        format!("{} passed, {} failed", self.passed, self.failed)
    }
}

/// Loads the project's built component on a plugin engine with the
/// project's limits, checking it implements the project's stage. Shared by
/// `plugin build` (the check) and `plugin test`.
pub async fn load(project: &Project) -> Result<Arc<LoadedPlugin>, AuthoringError> {
    let path = project.component_path();
    let bytes = std::fs::read(&path).map_err(|e| {
        AuthoringError::Project(format!(
            "{}: {e}: build the plugin first (`hookgate plugin build {}`)",
            path.display(),
            project.dir.display()
        ))
    })?;
    let cache = project.cache_dir();
    std::fs::create_dir_all(&cache).map_err(io_at(&cache))?;
    let engine = PluginEngine::with_cache(project.manifest.limits(), Some(&cache))
        .map_err(|e| AuthoringError::Check(format!("cannot start the plugin engine: {e:#}")))?;
    let name = &project.manifest.name;
    let plugin = engine
        .load(name, bytes, PluginSource::File(path.display().to_string()))
        .await
        .map_err(|e| AuthoringError::Check(e.to_string()))?;
    let stage = Stage::from(project.manifest.stage);
    if !plugin.implements(stage) {
        let has: Vec<String> = plugin.stages().iter().map(|s| s.to_string()).collect();
        return Err(AuthoringError::Check(format!(
            "{}: hookgate-plugin.yaml says stage {stage}, but the component implements {}",
            path.display(),
            if has.is_empty() {
                "no stage".to_owned()
            } else {
                has.join(", ")
            }
        )));
    }
    Ok(Arc::new(plugin))
}

/// Runs the fixtures (`fixtures/*.yaml`, or the one `request` file) and
/// prints each outcome to `out`. A `request` that is not YAML is a body,
/// handed to the plugin as it is.
pub async fn run(
    project: &Project,
    request: Option<&Path>,
    out: &mut String,
) -> Result<Summary, AuthoringError> {
    let plugin = load(project).await?;
    let files = match request {
        Some(file) => vec![file.to_owned()],
        None => fixture_files(&project.dir.join("fixtures"))?,
    };
    if files.is_empty() {
        let _ = writeln!(
            out,
            "no fixtures in {}",
            project.dir.join("fixtures").display()
        );
    }
    let mut summary = Summary::default();
    for file in &files {
        let shown = file
            .strip_prefix(&project.dir)
            .unwrap_or(file)
            .display()
            .to_string();
        let fixture = if is_yaml(file) {
            FixtureConfig::read(file)
        } else {
            std::fs::read(file)
                .map(|b| FixtureConfig::from_body(&b))
                .map_err(|e| e.to_string())
        };
        let fixture = match fixture {
            Ok(f) => f,
            Err(e) => {
                let _ = writeln!(out, "{shown}: FAILED: cannot read it: {e}");
                summary.failed += 1;
                continue;
            }
        };
        let base = file.parent().unwrap_or(Path::new("."));
        match run_one(project, &plugin, &fixture, base).await {
            Err(problem) => {
                let _ = writeln!(out, "{shown}: FAILED: {problem}");
                summary.failed += 1;
            }
            Ok((shown_outcome, diffs)) => {
                let verdict = match (&fixture.expect, diffs.is_empty()) {
                    (None, _) => "(no expect)",
                    (Some(_), true) => "ok",
                    (Some(_), false) => "FAILED",
                };
                let _ = writeln!(out, "{shown}: {verdict}\n{shown_outcome}");
                for d in &diffs {
                    let _ = writeln!(out, "    ✗ {d}");
                }
                if fixture.expect.is_some() {
                    if diffs.is_empty() {
                        summary.passed += 1;
                    } else {
                        summary.failed += 1;
                    }
                }
            }
        }
    }
    Ok(summary)
}

/// Runs one fixture: the outcome as text, and how it differs from
/// `expect`. An `Err` is a fixture that could not run at all.
async fn run_one(
    project: &Project,
    plugin: &LoadedPlugin,
    fixture: &FixtureConfig,
    base: &Path,
) -> Result<(String, Vec<String>), String> {
    // The same check a route's `with:` gets at start-up and reload.
    if let Err(problems) = plugin.validate_config(&fixture.with).await {
        let list: Vec<String> = problems
            .iter()
            .map(|p| {
                if p.path.is_empty() {
                    format!("with: {}", p.message)
                } else {
                    format!("with.{}: {}", p.path, p.message)
                }
            })
            .collect();
        return Err(format!(
            "the plugin refuses its `with:` block: {}",
            list.join("; ")
        ));
    }
    let ctx = CallContext {
        plugin: plugin.name().clone(),
        route: Arc::from("test"),
        config: Arc::new(PluginConfig::new(Some(&fixture.with))),
        limits: project.manifest.limits(),
        http: None,
    };
    let expect = fixture.expect.clone().unwrap_or_default();
    Ok(match Stage::from(project.manifest.stage) {
        Stage::Verify => {
            let req = fixture.inbound(base)?;
            let outcome = plugin.verify(&ctx, &req).await;
            (
                show_verdict(&outcome),
                fixture::check_verdict(&expect, &outcome),
            )
        }
        Stage::Transform => {
            let msg = fixture.message(base)?;
            let outcome = plugin.transform(&ctx, &msg).await;
            (
                show_messages(&outcome),
                fixture::check_messages(&expect, &outcome),
            )
        }
        Stage::Route => {
            let msg = fixture.message(base)?;
            let outcome = plugin.route(&ctx, &msg, &fixture.defaults).await;
            let shown = match &outcome {
                Ok(d) => format!("    destinations: {d:?}"),
                Err(e) => show_error(e),
            };
            (shown, fixture::check_destinations(&expect, &outcome))
        }
    })
}

fn show_verdict(outcome: &Result<Verdict, PluginError>) -> String {
    match outcome {
        Ok(Verdict::Accept {
            id,
            event_type,
            reply,
            consumed,
        }) => {
            let mut s = format!(
                "    accept (id: {}, event type: {}, consumed: {consumed:?})",
                id.as_deref().unwrap_or("-"),
                event_type.as_deref().unwrap_or("-")
            );
            if let Some(r) = reply {
                let _ = write!(s, "\n    reply {}: {}", r.status, excerpt(&r.body));
            }
            s
        }
        Ok(Verdict::Reject { status, reason }) => format!("    reject {status}: {reason}"),
        Ok(Verdict::Respond(r)) => format!("    respond {}: {}", r.status, excerpt(&r.body)),
        Err(e) => show_error(e),
    }
}

fn show_messages(outcome: &Result<Vec<Message>, PluginError>) -> String {
    match outcome {
        Ok(messages) => {
            let mut s = format!("    {} message(s)", messages.len());
            for (i, m) in messages.iter().enumerate() {
                let _ = write!(
                    s,
                    "\n    [{i}] event type: {}, content type: {}\n        {}",
                    m.event_type.as_deref().unwrap_or("-"),
                    m.content_type,
                    excerpt(&m.body)
                );
            }
            s
        }
        Err(e) => show_error(e),
    }
}

fn show_error(e: &PluginError) -> String {
    // Guest errors may carry a stack or traceback over several lines.
    format!(
        "    error ({}): {}",
        e.kind(),
        e.to_string().replace('\n', "\n        ")
    )
}

/// A body for the terminal: text, cut at 2000 characters.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    match text.char_indices().nth(2000) {
        Some((cut, _)) => format!("{}… ({} bytes)", &text[..cut], body.len()),
        None => text.into_owned(),
    }
}

fn is_yaml(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    )
}

/// `dir/*.yaml`, sorted.
fn fixture_files(dir: &Path) -> Result<Vec<PathBuf>, AuthoringError> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(Vec::new());
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && is_yaml(p))
        .collect();
    files.sort();
    Ok(files)
}
