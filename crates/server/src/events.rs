//! Lines the control plane writes to an app's log, and events: log lines
//! that record a state change, also listed by `GET /v1/apps/{app}/events`.

use berth_model::{EventKind, NewLogLine};

use crate::Ctx;

/// Appends one line to an app's log on behalf of the control plane.
pub(crate) async fn log(ctx: &Ctx, app: &str, scope: Option<&str>, line: String) {
    append(ctx, app, scope, None, line).await
}

/// Records a state change of `app` as an event line of its log.
pub(crate) async fn emit(ctx: &Ctx, app: &str, kind: EventKind, line: String) {
    append(ctx, app, None, Some(kind), line).await
}

async fn append(ctx: &Ctx, app: &str, scope: Option<&str>, event: Option<EventKind>, line: String) {
    let l = NewLogLine {
        app: app.into(),
        ts: berth_model::now_millis(),
        source: "berth".into(),
        scope: scope.map(Into::into),
        line,
        event,
    };
    match ctx.store.append_logs(&[l]).await {
        Ok(id) => ctx.watchers.logs_appended(id),
        Err(e) => tracing::warn!("could not write to the log of {app}: {e}"),
    }
}
