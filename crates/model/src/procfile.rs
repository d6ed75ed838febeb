//! Procfile parsing: `name: command` lines, as Heroku and foreman read them.

use std::collections::BTreeMap;

use thiserror::Error;

use crate::names::validate_process_type;

/// The process type that runs once per release before it goes live.
pub const RELEASE_TYPE: &str = "release";

/// A Procfile line that could not be understood.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ProcfileError {
    #[error("Procfile line {line}: expected \"type: command\" (e.g. \"web: gunicorn app:app\"), found {text:?}")]
    Syntax { line: usize, text: String },
    #[error("Procfile line {line}: {source}")]
    Name {
        line: usize,
        source: crate::names::NameError,
    },
    #[error("Procfile line {line}: process type {name:?} is defined twice")]
    Duplicate { line: usize, name: String },
    #[error("Procfile line {line}: process type {name:?} has an empty command")]
    EmptyCommand { line: usize, name: String },
    #[error("Procfile defines no process types; add a line such as \"web: gunicorn app:app\"")]
    Empty,
}

/// A parsed Procfile: process types in name order, plus the optional release
/// command, kept apart because it never runs as a long-lived process.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Procfile {
    pub processes: BTreeMap<String, String>,
    pub release: Option<String>,
}

/// Parses a Procfile. Blank lines and `#` comments are skipped.
pub fn parse(text: &str) -> Result<Procfile, ProcfileError> {
    let mut out = Procfile::default();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let Some((name, command)) = trimmed.split_once(':') else {
            return Err(ProcfileError::Syntax {
                line,
                text: trimmed.to_string(),
            });
        };
        let (name, command) = (name.trim(), command.trim());
        validate_process_type(name).map_err(|source| ProcfileError::Name { line, source })?;
        if command.is_empty() {
            return Err(ProcfileError::EmptyCommand {
                line,
                name: name.to_string(),
            });
        }
        let duplicate = if name == RELEASE_TYPE {
            out.release.replace(command.to_string()).is_some()
        } else {
            out.processes
                .insert(name.to_string(), command.to_string())
                .is_some()
        };
        if duplicate {
            return Err(ProcfileError::Duplicate {
                line,
                name: name.to_string(),
            });
        }
    }
    if out.processes.is_empty() {
        return Err(ProcfileError::Empty);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_types_and_release() {
        let p = parse(
            "# comment\nweb: gunicorn app:app --bind 0.0.0.0:$PORT\n\nworker:celery -A x worker\nrelease: python manage.py migrate\n",
        )
        .unwrap();
        assert_eq!(p.processes["web"], "gunicorn app:app --bind 0.0.0.0:$PORT");
        assert_eq!(p.processes["worker"], "celery -A x worker");
        assert_eq!(p.release.as_deref(), Some("python manage.py migrate"));
    }

    #[test]
    fn errors_name_the_line() {
        assert_eq!(
            parse("web: a\nnonsense\n"),
            Err(ProcfileError::Syntax {
                line: 2,
                text: "nonsense".into()
            })
        );
        assert!(matches!(
            parse("web: a\nweb: b"),
            Err(ProcfileError::Duplicate { line: 2, .. })
        ));
        assert!(matches!(
            parse("we b: a"),
            Err(ProcfileError::Name { line: 1, .. })
        ));
        assert!(matches!(
            parse("web:   "),
            Err(ProcfileError::EmptyCommand { line: 1, .. })
        ));
        assert_eq!(parse("release: migrate\n"), Err(ProcfileError::Empty));
    }
}
