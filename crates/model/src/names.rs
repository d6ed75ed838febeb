//! Rules for the names users type: apps, process types, config vars, domains.
//!
//! App names become DNS labels (`APP.localhost`) and directory names, so they
//! are restricted to what is safe in both.

use thiserror::Error;

/// A name that breaks one of the rules, with the rule spelled out.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum NameError {
    #[error("invalid app name {0:?}: use 2 to 40 lowercase letters, digits and dashes, starting with a letter and not ending with a dash (e.g. \"my-shop\")")]
    App(String),
    #[error(
        "invalid process type {0:?}: use letters, digits, '_' and '-' (e.g. \"web\", \"worker\")"
    )]
    ProcessType(String),
    #[error("invalid config var name {0:?}: names must match [A-Za-z_][A-Za-z0-9_]* (e.g. \"DATABASE_URL\")")]
    EnvVar(String),
    #[error("config var {0:?} is set by Berth itself and cannot be overridden")]
    ReservedEnvVar(String),
    #[error("invalid domain {0:?}: use a hostname such as \"www.example.com\" (letters, digits, dashes and dots)")]
    Domain(String),
}

/// Checks an app name: a DNS label of 2–40 characters.
pub fn validate_app_name(name: &str) -> Result<(), NameError> {
    let ok = (2..=40).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(NameError::App(name.to_string()))
    }
}

/// Checks a Procfile process type name.
pub fn validate_process_type(name: &str) -> Result<(), NameError> {
    let ok = !name.is_empty()
        && name.len() <= 40
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(NameError::ProcessType(name.to_string()))
    }
}

/// Variables Berth sets for every process; a user value would be ignored or
/// break the contract with the agent, so they are refused up front.
pub const RESERVED_ENV_VARS: &[&str] = &["PORT", "DYNO", "BERTH_APP", "BERTH_RELEASE"];

/// Checks a config var name against POSIX rules and Berth's reserved names.
pub fn validate_env_name(name: &str) -> Result<(), NameError> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(NameError::EnvVar(name.to_string()));
    }
    if RESERVED_ENV_VARS.contains(&name) {
        return Err(NameError::ReservedEnvVar(name.to_string()));
    }
    Ok(())
}

/// Normalises and checks a custom domain: lowercased, no trailing dot, no port.
pub fn normalize_domain(domain: &str) -> Result<String, NameError> {
    let d = domain.trim().trim_end_matches('.').to_ascii_lowercase();
    let labels_ok = d.split('.').all(|l| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    });
    if d.is_empty() || d.len() > 253 || !labels_ok {
        return Err(NameError::Domain(domain.to_string()));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_names() {
        for good in ["hello", "my-shop", "a1", "shop2-eu"] {
            assert_eq!(validate_app_name(good), Ok(()), "{good}");
        }
        for bad in ["", "a", "Hello", "1app", "app-", "my_shop", "a.b", "../x"] {
            assert!(validate_app_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn env_names() {
        assert!(validate_env_name("DATABASE_URL").is_ok());
        assert!(validate_env_name("_x1").is_ok());
        assert_eq!(
            validate_env_name("1ABC"),
            Err(NameError::EnvVar("1ABC".into()))
        );
        assert!(validate_env_name("A-B").is_err());
        assert!(validate_env_name("").is_err());
        assert_eq!(
            validate_env_name("PORT"),
            Err(NameError::ReservedEnvVar("PORT".into()))
        );
    }

    #[test]
    fn domains() {
        assert_eq!(
            normalize_domain("WWW.Example.com.").as_deref(),
            Ok("www.example.com")
        );
        assert!(normalize_domain("exa mple.com").is_err());
        assert!(normalize_domain("example.com:80").is_err());
        assert!(normalize_domain("-a.com").is_err());
        assert!(normalize_domain("a..com").is_err());
    }
}
