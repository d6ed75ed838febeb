//! Django apps: reading their settings, the `web` process written for them
//! when they have no Procfile, and `collectstatic`.
//!
//! Settings are read by importing the settings module in the virtualenv's
//! Python — the only reliable reader of a Python file — without
//! `django.setup()`, so installed apps are not imported and no database is
//! touched.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use berth_model::procfile::Procfile;
use berth_model::StaticFiles;
use serde::Deserialize;

use crate::install::add_packages;
use crate::steps::{Step, Tools};
use crate::{BuildError, LogSink};

/// Prefix of the line the settings probe prints its JSON on, so that
/// settings modules that print things themselves do not confuse it.
const MARK: &str = "BERTH_DJANGO=";

/// Finds DJANGO_SETTINGS_MODULE (the config var, else the default that
/// manage.py sets) and prints the settings the build needs.
const PROBE: &str = r#"
import ast, json, os, sys
def report(**values):
    print("BERTH_DJANGO=" + json.dumps(values, default=str))
try:
    import django
except ImportError:
    report(django=False)
    sys.exit(0)
def is_str(node):
    return isinstance(node, ast.Constant) and isinstance(node.value, str)
def default_settings():
    with open("manage.py", encoding="utf-8") as f:
        tree = ast.parse(f.read())
    for node in ast.walk(tree):
        # os.environ.setdefault("DJANGO_SETTINGS_MODULE", "x.settings")
        if isinstance(node, ast.Call) and len(node.args) == 2 and all(map(is_str, node.args)):
            if node.args[0].value == "DJANGO_SETTINGS_MODULE":
                return node.args[1].value
        # os.environ["DJANGO_SETTINGS_MODULE"] = "x.settings"
        if isinstance(node, ast.Assign) and is_str(node.value):
            for t in node.targets:
                if isinstance(t, ast.Subscript) and is_str(t.slice) and t.slice.value == "DJANGO_SETTINGS_MODULE":
                    return node.value.value
    return None
module = os.environ.get("DJANGO_SETTINGS_MODULE") or default_settings()
if not module:
    report(django=True)
    sys.exit(0)
os.environ["DJANGO_SETTINGS_MODULE"] = module
from django.conf import settings
report(
    django=True,
    settings_module=module,
    wsgi_application=getattr(settings, "WSGI_APPLICATION", None),
    static_root=getattr(settings, "STATIC_ROOT", None),
    static_url=getattr(settings, "STATIC_URL", None),
)
"#;

/// What the probe prints.
#[derive(Debug, Default, Deserialize)]
struct Report {
    django: bool,
    settings_module: Option<String>,
    wsgi_application: Option<String>,
    static_root: Option<String>,
    static_url: Option<String>,
}

/// The settings of a Django app that the build acts on.
#[derive(Debug, Clone)]
pub(crate) struct DjangoSettings {
    pub module: String,
    pub wsgi_application: Option<String>,
    pub static_root: Option<String>,
    pub static_url: Option<String>,
}

/// Reads the settings of an app with a `manage.py`; `None` when Django is
/// not installed in its virtualenv (then it is not a Django app after all).
pub(crate) async fn inspect<L: LogSink>(
    tools: &Tools<'_, L>,
) -> Result<Option<DjangoSettings>, BuildError> {
    let mut probe = tools.python();
    probe.args(["-c", PROBE]);
    let step = Step {
        what: "loading the Django settings".into(),
        hint: "the settings module raised an error during the build; the app's config vars are set, but no database or other service is reachable".into(),
    };
    let out = tools.capture(probe).await?;
    let report = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix(MARK))
        .and_then(|json| serde_json::from_str::<Report>(json).ok());
    let (true, Some(report)) = (out.status.success(), report) else {
        return Err(out.failure(&step));
    };
    if !report.django {
        tools.notice("manage.py found, but Django is not installed in the virtualenv: not treating the app as a Django app");
        return Ok(None);
    }
    let Some(module) = report.settings_module else {
        return Err(BuildError::Django {
            problem: "manage.py does not set DJANGO_SETTINGS_MODULE".into(),
            hint: "set it as a config var, e.g. DJANGO_SETTINGS_MODULE=mysite.settings".into(),
        });
    };
    tools.header(&format!("Django app detected (settings: {module})"));
    Ok(Some(DjangoSettings {
        module,
        wsgi_application: report.wsgi_application,
        static_root: report.static_root.filter(|s| !s.is_empty()),
        static_url: report.static_url,
    }))
}

/// Runs `collectstatic` when `STATIC_ROOT` is set, and says where the router
/// finds the result.
pub(crate) async fn collect_static<L: LogSink>(
    tools: &Tools<'_, L>,
    settings: &DjangoSettings,
) -> Result<Option<StaticFiles>, BuildError> {
    if tools
        .opts
        .env
        .get("DISABLE_COLLECTSTATIC")
        .map(String::as_str)
        == Some("1")
    {
        tools.notice("DISABLE_COLLECTSTATIC=1: skipping collectstatic");
        return Ok(None);
    }
    let Some(static_root) = &settings.static_root else {
        tools.notice("STATIC_ROOT is not set in your settings: skipping collectstatic, so no static files will be served (set STATIC_ROOT = BASE_DIR / \"staticfiles\" to have Berth serve them)");
        return Ok(None);
    };
    let dir = static_dir(&tools.app, static_root)?;

    tools.header("Collecting static files: python manage.py collectstatic --noinput");
    let mut collect = tools.python();
    collect.args(["manage.py", "collectstatic", "--noinput"]);
    let step = Step {
        what: "python manage.py collectstatic".into(),
        hint: "check STATIC_ROOT, STATICFILES_DIRS and that the settings load with the app's config vars (set DISABLE_COLLECTSTATIC=1 to skip this step)".into(),
    };
    tools.stream(collect, &step).await?;

    let Some(url_prefix) = settings.static_url.as_deref().and_then(url_prefix) else {
        tools.notice(&format!(
            "STATIC_URL is {:?}, not a path on this site: the router will not serve static files",
            settings.static_url.as_deref().unwrap_or("unset")
        ));
        return Ok(None);
    };
    if !dir.is_dir() {
        tools.notice(
            "collectstatic wrote nothing to STATIC_ROOT: the router will not serve static files",
        );
        return Ok(None);
    }
    Ok(Some(StaticFiles {
        url_prefix,
        dir: dir.display().to_string(),
    }))
}

/// The Procfile of a Django app without one: gunicorn serving its
/// `WSGI_APPLICATION` (gunicorn binds `0.0.0.0:$PORT` when `PORT` is set).
pub(crate) async fn procfile<L: LogSink>(
    tools: &Tools<'_, L>,
    settings: &DjangoSettings,
) -> Result<Procfile, BuildError> {
    let app = settings.wsgi_application.as_deref().unwrap_or("");
    let Some(target) = gunicorn_target(app) else {
        return Err(BuildError::Django {
            problem: format!(
                "WSGI_APPLICATION in {} is {app:?}, not a dotted path such as \"mysite.wsgi.application\"",
                settings.module
            ),
            hint: "fix WSGI_APPLICATION, or add a Procfile with a web process".into(),
        });
    };
    if !tools.venv().join("bin").join("gunicorn").exists() {
        tools.header("Installing gunicorn to run the web process (it is not in your dependencies)");
        add_packages(
            tools,
            &["gunicorn"],
            "add gunicorn to your dependencies, or add a Procfile with a web process",
        )
        .await?;
    }
    let web = format!("gunicorn {target}");
    tools.header(&format!(
        "No Procfile: using the Django web process \"web: {web}\""
    ));
    Ok(Procfile {
        processes: BTreeMap::from([("web".to_owned(), web)]),
        release: None,
    })
}

/// `mysite.wsgi.application` → `mysite.wsgi:application`.
fn gunicorn_target(wsgi_application: &str) -> Option<String> {
    let (module, attr) = wsgi_application.rsplit_once('.')?;
    let ident = |s: &str| {
        s.split('.').all(|part| {
            part.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
    };
    (ident(module) && ident(attr)).then(|| format!("{module}:{attr}"))
}

/// `STATIC_URL` as a router prefix (`static/` → `/static/`); `None` for
/// a full URL (a CDN) or nothing at all.
fn url_prefix(static_url: &str) -> Option<String> {
    let s = static_url.trim();
    if s.is_empty() || s == "/" || s.contains("://") || s.starts_with("//") {
        return None;
    }
    let inner = s.trim_matches('/');
    Some(format!("/{inner}/"))
}

/// The absolute `STATIC_ROOT`, which must be a directory inside the app:
/// the artifact is the app directory, and nothing else on the node is the
/// build's to write.
fn static_dir(app: &Path, static_root: &str) -> Result<PathBuf, BuildError> {
    let dir = normalize(&app.join(static_root));
    if dir.starts_with(app) && dir != app {
        return Ok(dir);
    }
    Err(BuildError::Django {
        problem: format!("STATIC_ROOT is {static_root}, which is not a directory inside the app"),
        hint: "set STATIC_ROOT = BASE_DIR / \"staticfiles\"".into(),
    })
}

/// Removes `.` and `..` without touching the filesystem.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gunicorn_targets() {
        assert_eq!(
            gunicorn_target("mysite.wsgi.application").as_deref(),
            Some("mysite.wsgi:application")
        );
        assert_eq!(gunicorn_target("app").as_deref(), None);
        assert_eq!(gunicorn_target("x.wsgi.app; rm -rf /").as_deref(), None);
    }

    #[test]
    fn url_prefixes() {
        assert_eq!(url_prefix("/static/").as_deref(), Some("/static/"));
        assert_eq!(url_prefix("static/").as_deref(), Some("/static/"));
        assert_eq!(url_prefix("/assets").as_deref(), Some("/assets/"));
        assert_eq!(url_prefix("/a/b/").as_deref(), Some("/a/b/"));
        assert_eq!(url_prefix("https://cdn.example.com/s/"), None);
        assert_eq!(url_prefix("//cdn.example.com/s/"), None);
        assert_eq!(url_prefix(""), None);
    }

    #[test]
    fn static_root_stays_inside_the_app() {
        let app = Path::new("/b/app");
        assert_eq!(
            static_dir(app, "/b/app/staticfiles").unwrap(),
            Path::new("/b/app/staticfiles")
        );
        assert_eq!(
            static_dir(app, "static").unwrap(),
            Path::new("/b/app/static")
        );
        for bad in ["/var/www/static", "/b/app", "../static", "/b/app/../x"] {
            let err = static_dir(app, bad).unwrap_err();
            assert!(err.to_string().contains("BASE_DIR"), "{bad}: {err}");
        }
    }
}
