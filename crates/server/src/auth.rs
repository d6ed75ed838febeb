//! Bearer-token authentication of every `/v1` route but `/v1/health`.

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use crate::{ApiErr, Ctx};

pub async fn require_token(
    State(ctx): State<Ctx>,
    req: Request,
    next: Next,
) -> Result<Response, ApiErr> {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        None => Err(ApiErr(
            StatusCode::UNAUTHORIZED,
            "missing API token: the Berth API needs one. `berth up` stores it for the local CLI; elsewhere set BERTH_TOKEN".into(),
        )),
        Some(t) if constant_time_eq(t.as_bytes(), ctx.config.admin_token.as_bytes()) => {
            Ok(next.run(req).await)
        }
        Some(_) => Err(ApiErr(
            StatusCode::UNAUTHORIZED,
            "invalid API token: check BERTH_TOKEN or ~/.config/berth/config.toml".into(),
        )),
    }
}

/// Compares without an early exit, so response time says nothing about how
/// much of a guessed token was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() || b.is_empty() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    #[test]
    fn compares_tokens() {
        use super::constant_time_eq as eq;
        assert!(eq(b"abc", b"abc"));
        assert!(!eq(b"abd", b"abc"));
        assert!(!eq(b"ab", b"abc"));
        assert!(!eq(b"", b""));
    }
}
