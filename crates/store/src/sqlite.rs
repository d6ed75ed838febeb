//! The embedded backend: one SQLite file in WAL mode.
//!
//! SQLite allows one writer at a time, and a deferred transaction that later
//! writes can fail with SQLITE_BUSY regardless of the busy timeout; so every
//! write transaction here takes an async mutex first. Readers never wait.

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use berth_model::*;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, Sqlite, SqlitePool, Transaction};
use tokio::sync::Mutex;

use crate::*;

mod runs;

/// Schema migrations, applied in order; index + 1 is the schema version.
/// Plain SQL shared in spirit with the PostgreSQL backend: no SQLite-only
/// types beyond INTEGER PRIMARY KEY for the log cursor.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE revision (id INTEGER PRIMARY KEY CHECK (id = 1), value BIGINT NOT NULL);
INSERT INTO revision (id, value) VALUES (1, 1);
CREATE TABLE apps (
    name TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL,
    current_release INTEGER,
    next_release INTEGER NOT NULL DEFAULT 1,
    formation TEXT NOT NULL,
    config TEXT NOT NULL
);
CREATE TABLE domains (domain TEXT PRIMARY KEY, app TEXT NOT NULL);
CREATE TABLE builds (
    id TEXT PRIMARY KEY,
    app TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    finished_at BIGINT,
    node TEXT,
    error TEXT,
    artifact TEXT,
    release INTEGER,
    source_size BIGINT NOT NULL,
    config TEXT NOT NULL,
    created_by TEXT NOT NULL
);
CREATE INDEX builds_status ON builds (status);
CREATE TABLE releases (
    app TEXT NOT NULL,
    version INTEGER NOT NULL,
    build_id TEXT NOT NULL,
    config TEXT NOT NULL,
    description TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    PRIMARY KEY (app, version)
);
CREATE INDEX releases_status ON releases (status);
CREATE TABLE instances (
    node TEXT NOT NULL,
    app TEXT NOT NULL,
    release INTEGER NOT NULL,
    process_type TEXT NOT NULL,
    idx INTEGER NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (node, app, release, process_type, idx)
);
CREATE TABLE nodes (name TEXT PRIMARY KEY, last_seen BIGINT NOT NULL);
CREATE TABLE logs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    app TEXT NOT NULL,
    ts BIGINT NOT NULL,
    source TEXT NOT NULL,
    scope TEXT,
    line TEXT NOT NULL
);
CREATE INDEX logs_app ON logs (app, id);
"#,
    r#"
ALTER TABLE apps ADD COLUMN settings TEXT NOT NULL DEFAULT '{}';
ALTER TABLE apps ADD COLUMN rollout TEXT;
ALTER TABLE apps ADD COLUMN generations TEXT NOT NULL DEFAULT '{}';
ALTER TABLE apps ADD COLUMN secrets TEXT NOT NULL DEFAULT '{}';
ALTER TABLE releases ADD COLUMN secrets TEXT NOT NULL DEFAULT '{}';
ALTER TABLE builds ADD COLUMN collected_at BIGINT;
ALTER TABLE logs ADD COLUMN event TEXT;
CREATE INDEX logs_events ON logs (app, id) WHERE event IS NOT NULL;
CREATE TABLE secrets (
    app TEXT NOT NULL,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    sealed TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (app, name, version)
);
CREATE TABLE routers (name TEXT PRIMARY KEY, applied BIGINT NOT NULL, last_seen BIGINT NOT NULL);
DROP TABLE instances;
CREATE TABLE instances (
    node TEXT NOT NULL,
    app TEXT NOT NULL,
    release INTEGER NOT NULL,
    process_type TEXT NOT NULL,
    idx INTEGER NOT NULL,
    generation INTEGER NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (node, app, release, process_type, idx, generation)
);
"#,
    r#"
CREATE TABLE runs (
    app TEXT NOT NULL,
    number INTEGER NOT NULL,
    release INTEGER NOT NULL,
    command TEXT NOT NULL,
    attach INTEGER NOT NULL,
    tty INTEGER NOT NULL,
    node TEXT NOT NULL,
    state TEXT NOT NULL,
    pid INTEGER,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    started_at BIGINT,
    finished_at BIGINT,
    exit_code INTEGER,
    outcome TEXT,
    kill_requested INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (app, number)
);
CREATE INDEX runs_state ON runs (state);
"#,
    r#"
ALTER TABLE routers ADD COLUMN sessions TEXT NOT NULL DEFAULT '[]';
"#,
];

/// A [`Store`] in one SQLite file.
pub struct SqliteStore {
    pool: SqlitePool,
    write: Mutex<()>,
}

type Tx<'a> = Transaction<'a, Sqlite>;

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and migrates it.
    pub async fn open(path: &Path) -> Result<Self> {
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        Self::connect(opts, 8).await
    }

    /// An in-memory database, for tests.
    pub async fn in_memory() -> Result<Self> {
        let opts = SqliteConnectOptions::from_str("sqlite::memory:")?;
        // One connection: each in-memory connection is its own database.
        Self::connect(opts, 1).await
    }

    async fn connect(opts: SqliteConnectOptions, max: u32) -> Result<Self> {
        let pool = SqlitePoolOptions::new()
            .max_connections(max)
            .connect_with(opts)
            .await?;
        let store = Self {
            pool,
            write: Mutex::new(()),
        };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<()> {
        let _w = self.write.lock().await;
        let mut tx = self.pool.begin().await?;
        sqlx::query("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            .execute(&mut *tx)
            .await?;
        let current: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM schema_version")
            .fetch_one(&mut *tx)
            .await?;
        let current = current.unwrap_or(0) as usize;
        if current > MIGRATIONS.len() {
            return Err(StoreError::corrupt(
                "schema",
                format!(
                    "the database is at schema version {current}, newer than this berth ({}); upgrade berth",
                    MIGRATIONS.len()
                ),
            ));
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
            sqlx::raw_sql(sql).execute(&mut *tx).await?;
            sqlx::query("INSERT INTO schema_version (version) VALUES (?)")
                .bind((i + 1) as i64)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn begin_write(&self) -> Result<(tokio::sync::MutexGuard<'_, ()>, Tx<'_>)> {
        let guard = self.write.lock().await;
        let tx = self.pool.begin().await?;
        Ok((guard, tx))
    }
}

async fn bump(tx: &mut Tx<'_>) -> Result<Revision> {
    let v: i64 =
        sqlx::query_scalar("UPDATE revision SET value = value + 1 WHERE id = 1 RETURNING value")
            .fetch_one(&mut **tx)
            .await?;
    Ok(v as Revision)
}

fn to_json<T: serde::Serialize>(v: &T) -> String {
    // Serialising our own plain data types cannot fail.
    serde_json::to_string(v).unwrap_or_default()
}

fn from_json<T: serde::de::DeserializeOwned>(what: &str, s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| StoreError::corrupt(what, e))
}

fn app_from_row(row: &sqlx::sqlite::SqliteRow, domains: Vec<String>) -> Result<AppRecord> {
    Ok(AppRecord {
        name: row.try_get("name")?,
        created_at: row.try_get("created_at")?,
        current_release: row
            .try_get::<Option<i64>, _>("current_release")?
            .map(|v| v as u32),
        formation: from_json("formation", &row.try_get::<String, _>("formation")?)?,
        config: from_json("config", &row.try_get::<String, _>("config")?)?,
        secrets: from_json("secret refs", &row.try_get::<String, _>("secrets")?)?,
        domains,
        settings: from_json("settings", &row.try_get::<String, _>("settings")?)?,
        rollout: row
            .try_get::<Option<String>, _>("rollout")?
            .map(|r| from_json("rollout", &r))
            .transpose()?,
        generations: from_json("generations", &row.try_get::<String, _>("generations")?)?,
    })
}

fn build_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<BuildRecord> {
    let status: String = row.try_get("status")?;
    let artifact: Option<String> = row.try_get("artifact")?;
    Ok(BuildRecord {
        build: Build {
            id: row.try_get("id")?,
            app: row.try_get("app")?,
            status: BuildStatus::parse(&status)
                .ok_or_else(|| StoreError::corrupt("build status", &status))?,
            created_at: row.try_get("created_at")?,
            finished_at: row.try_get("finished_at")?,
            node: row.try_get("node")?,
            error: row.try_get("error")?,
            artifact: artifact.map(|a| from_json("artifact", &a)).transpose()?,
            release: row.try_get::<Option<i64>, _>("release")?.map(|v| v as u32),
            source_size: row.try_get::<i64, _>("source_size")? as u64,
        },
        config: from_json("build config", &row.try_get::<String, _>("config")?)?,
        created_by: row.try_get("created_by")?,
    })
}

fn release_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<Release> {
    let status: String = row.try_get("status")?;
    Ok(Release {
        app: row.try_get("app")?,
        version: row.try_get::<i64, _>("version")? as u32,
        build_id: row.try_get("build_id")?,
        config: from_json("release config", &row.try_get::<String, _>("config")?)?,
        secrets: from_json("release secrets", &row.try_get::<String, _>("secrets")?)?,
        description: row.try_get("description")?,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
        status: ReleaseStatus::parse(&status)
            .ok_or_else(|| StoreError::corrupt("release status", &status))?,
        error: row.try_get("error")?,
    })
}

async fn domains_of(pool: impl sqlx::SqliteExecutor<'_>, app: &str) -> Result<Vec<String>> {
    Ok(
        sqlx::query_scalar("SELECT domain FROM domains WHERE app = ? ORDER BY domain")
            .bind(app)
            .fetch_all(pool)
            .await?,
    )
}

async fn app_in_tx(tx: &mut Tx<'_>, name: &str) -> Result<AppRecord> {
    let row = sqlx::query("SELECT * FROM apps WHERE name = ?")
        .bind(name)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("no app named {name:?}")))?;
    let domains = domains_of(&mut **tx, name).await?;
    app_from_row(&row, domains)
}

async fn build_in_tx(tx: &mut Tx<'_>, id: &str) -> Result<BuildRecord> {
    let row = sqlx::query("SELECT * FROM builds WHERE id = ?")
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("no build {id:?}")))?;
    build_from_row(&row)
}

async fn release_in_tx(tx: &mut Tx<'_>, app: &str, version: u32) -> Result<Release> {
    let row = sqlx::query("SELECT * FROM releases WHERE app = ? AND version = ?")
        .bind(app)
        .bind(version as i64)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("app {app:?} has no release v{version}")))?;
    release_from_row(&row)
}

async fn set_app_json<T: serde::Serialize>(
    tx: &mut Tx<'_>,
    app: &str,
    column: &'static str,
    value: Option<&T>,
) -> Result<()> {
    // `column` is one of our own names, never user input.
    sqlx::query(&format!("UPDATE apps SET {column} = ? WHERE name = ?"))
        .bind(value.map(to_json))
        .bind(app)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

async fn set_release_status(
    tx: &mut Tx<'_>,
    app: &str,
    version: u32,
    status: ReleaseStatus,
    error: Option<&str>,
) -> Result<()> {
    sqlx::query("UPDATE releases SET status = ?, error = ? WHERE app = ? AND version = ?")
        .bind(status.as_str())
        .bind(error)
        .bind(app)
        .bind(version as i64)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Starts rolling out `version` with `generations`; a rollout it interrupts
/// leaves its release superseded.
async fn start_rollout(
    tx: &mut Tx<'_>,
    app: &AppRecord,
    version: u32,
    generations: BTreeMap<String, u32>,
    description: &str,
    now: UnixMillis,
) -> Result<Rollout> {
    if let Some(previous) = &app.rollout {
        if previous.release != version && Some(previous.release) != app.current_release {
            set_release_status(
                tx,
                &app.name,
                previous.release,
                ReleaseStatus::Superseded,
                Some(&format!(
                    "replaced by v{version} before its rollout finished"
                )),
            )
            .await?;
        }
    }
    if Some(version) != app.current_release {
        set_release_status(tx, &app.name, version, ReleaseStatus::Rolling, None).await?;
    }
    let rollout = Rollout {
        release: version,
        generations,
        started_at: now,
        progress_at: now,
        up: 0,
        description: description.to_string(),
    };
    set_app_json(tx, &app.name, "rollout", Some(&rollout)).await?;
    Ok(rollout)
}

/// A new release of `build` for `app`: pending when it has a release phase
/// to run (and `release_phase` asks for it), else rolling out at once.
#[allow(clippy::too_many_arguments)]
async fn insert_release(
    tx: &mut Tx<'_>,
    app: &AppRecord,
    build: &BuildRecord,
    config: &BTreeMap<String, String>,
    secrets: &BTreeMap<String, u32>,
    description: &str,
    created_by: &str,
    release_phase: bool,
    now: UnixMillis,
) -> Result<Release> {
    let version: i64 = sqlx::query_scalar(
        "UPDATE apps SET next_release = next_release + 1 WHERE name = ? RETURNING next_release - 1",
    )
    .bind(&app.name)
    .fetch_one(&mut **tx)
    .await?;
    let version = version as u32;
    sqlx::query(
        "INSERT INTO releases (app, version, build_id, config, secrets, description, created_by, created_at, status) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending')",
    )
    .bind(&app.name)
    .bind(version as i64)
    .bind(&build.build.id)
    .bind(to_json(config))
    .bind(to_json(secrets))
    .bind(description)
    .bind(created_by)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    let has_phase = build
        .build
        .artifact
        .as_ref()
        .is_some_and(|a| a.release_command.is_some());
    if !(release_phase && has_phase) {
        start_rollout(tx, app, version, app.generations.clone(), description, now).await?;
    }
    release_in_tx(tx, &app.name, version).await
}

/// The build a rollback or config change reuses, refused clearly when its
/// artifact is gone.
async fn reusable_build(tx: &mut Tx<'_>, app: &str, release: &Release) -> Result<BuildRecord> {
    let build = build_in_tx(tx, &release.build_id).await?;
    let collected: Option<i64> = sqlx::query_scalar("SELECT collected_at FROM builds WHERE id = ?")
        .bind(&release.build_id)
        .fetch_one(&mut **tx)
        .await?;
    if collected.is_some() || build.build.artifact.is_none() {
        return Err(StoreError::Conflict(format!(
            "the build of v{} ({}) of {app} was garbage-collected (Berth keeps the newest builds only; see --keep-builds); deploy that code again with `berth deploy`",
            release.version,
            short_id(&release.build_id)
        )));
    }
    Ok(build)
}

#[async_trait]
impl Store for SqliteStore {
    async fn revision(&self) -> Result<Revision> {
        let v: i64 = sqlx::query_scalar("SELECT value FROM revision WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        Ok(v as Revision)
    }

    async fn create_app(&self, name: &str, now: UnixMillis) -> Result<AppRecord> {
        let (_w, mut tx) = self.begin_write().await?;
        let exists: Option<String> = sqlx::query_scalar("SELECT name FROM apps WHERE name = ?")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_some() {
            return Err(StoreError::Conflict(format!(
                "an app named {name:?} already exists; pick another name"
            )));
        }
        sqlx::query(
            "INSERT INTO apps (name, created_at, formation, config) VALUES (?, ?, '{}', '{}')",
        )
        .bind(name)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        bump(&mut tx).await?;
        let app = app_in_tx(&mut tx, name).await?;
        tx.commit().await?;
        Ok(app)
    }

    async fn app(&self, name: &str) -> Result<Option<AppRecord>> {
        let Some(row) = sqlx::query("SELECT * FROM apps WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let domains = domains_of(&self.pool, name).await?;
        app_from_row(&row, domains).map(Some)
    }

    async fn apps(&self) -> Result<Vec<AppRecord>> {
        let rows = sqlx::query("SELECT * FROM apps ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        let mut domains: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for row in sqlx::query("SELECT domain, app FROM domains ORDER BY domain")
            .fetch_all(&self.pool)
            .await?
        {
            domains
                .entry(row.try_get("app")?)
                .or_default()
                .push(row.try_get("domain")?);
        }
        rows.iter()
            .map(|r| {
                let name: String = r.try_get("name")?;
                app_from_row(r, domains.remove(&name).unwrap_or_default())
            })
            .collect()
    }

    async fn delete_app(&self, name: &str) -> Result<()> {
        let (_w, mut tx) = self.begin_write().await?;
        let n = sqlx::query("DELETE FROM apps WHERE name = ?")
            .bind(name)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound(format!("no app named {name:?}")));
        }
        for table in ["domains", "builds", "releases", "logs", "secrets", "runs"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE app = ?"))
                .bind(name)
                .execute(&mut *tx)
                .await?;
        }
        // Instances stay until their agent reports them gone: they are actual
        // state, and the agent stops them when they leave its desired state.
        bump(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn set_formation(&self, app: &str, counts: &BTreeMap<String, u32>) -> Result<AppRecord> {
        let (_w, mut tx) = self.begin_write().await?;
        let mut rec = app_in_tx(&mut tx, app).await?;
        rec.formation
            .extend(counts.iter().map(|(k, v)| (k.clone(), *v)));
        sqlx::query("UPDATE apps SET formation = ? WHERE name = ?")
            .bind(to_json(&rec.formation))
            .bind(app)
            .execute(&mut *tx)
            .await?;
        bump(&mut tx).await?;
        tx.commit().await?;
        Ok(rec)
    }

    async fn add_domain(&self, app: &str, domain: &str) -> Result<()> {
        let (_w, mut tx) = self.begin_write().await?;
        app_in_tx(&mut tx, app).await?;
        let owner: Option<String> = sqlx::query_scalar("SELECT app FROM domains WHERE domain = ?")
            .bind(domain)
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(owner) = owner {
            return Err(StoreError::Conflict(if owner == app {
                format!("{domain} is already a domain of {app}")
            } else {
                format!("{domain} is already used by another app; remove it there first")
            }));
        }
        sqlx::query("INSERT INTO domains (domain, app) VALUES (?, ?)")
            .bind(domain)
            .bind(app)
            .execute(&mut *tx)
            .await?;
        bump(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn remove_domain(&self, app: &str, domain: &str) -> Result<()> {
        let (_w, mut tx) = self.begin_write().await?;
        let n = sqlx::query("DELETE FROM domains WHERE domain = ? AND app = ?")
            .bind(domain)
            .bind(app)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound(format!(
                "{domain} is not a domain of {app}"
            )));
        }
        bump(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn create_build(&self, b: NewBuild) -> Result<BuildRecord> {
        let (_w, mut tx) = self.begin_write().await?;
        let app = app_in_tx(&mut tx, &b.app).await?;
        sqlx::query(
            "INSERT INTO builds (id, app, status, created_at, source_size, config, created_by) \
             VALUES (?, ?, 'queued', ?, ?, ?, ?)",
        )
        .bind(&b.id)
        .bind(&b.app)
        .bind(b.now)
        .bind(b.source_size as i64)
        .bind(to_json(&app.config))
        .bind(&b.created_by)
        .execute(&mut *tx)
        .await?;
        bump(&mut tx).await?;
        let rec = build_in_tx(&mut tx, &b.id).await?;
        tx.commit().await?;
        Ok(rec)
    }

    async fn build(&self, id: &str) -> Result<Option<BuildRecord>> {
        sqlx::query("SELECT * FROM builds WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(build_from_row)
            .transpose()
    }

    async fn queued_builds(&self) -> Result<Vec<BuildRecord>> {
        sqlx::query("SELECT * FROM builds WHERE status = 'queued' ORDER BY created_at")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(build_from_row)
            .collect()
    }

    async fn claim_build(&self, id: &str, node: &str, _now: UnixMillis) -> Result<BuildRecord> {
        let (_w, mut tx) = self.begin_write().await?;
        let n = sqlx::query(
            "UPDATE builds SET status = 'building', node = ? WHERE id = ? AND status = 'queued'",
        )
        .bind(node)
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 0 {
            build_in_tx(&mut tx, id).await?;
            return Err(StoreError::Conflict(format!("build {id} is not queued")));
        }
        bump(&mut tx).await?;
        let rec = build_in_tx(&mut tx, id).await?;
        tx.commit().await?;
        Ok(rec)
    }

    async fn fail_build(&self, id: &str, error: &str, now: UnixMillis) -> Result<BuildRecord> {
        let (_w, mut tx) = self.begin_write().await?;
        let rec = build_in_tx(&mut tx, id).await?;
        if rec.build.status.is_final() {
            return Err(StoreError::Conflict(format!(
                "build {id} has already finished"
            )));
        }
        sqlx::query("UPDATE builds SET status = 'failed', error = ?, finished_at = ? WHERE id = ?")
            .bind(error)
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        bump(&mut tx).await?;
        let rec = build_in_tx(&mut tx, id).await?;
        tx.commit().await?;
        Ok(rec)
    }

    async fn succeed_build(
        &self,
        id: &str,
        artifact: &Artifact,
        now: UnixMillis,
    ) -> Result<(BuildRecord, Release)> {
        let (_w, mut tx) = self.begin_write().await?;
        let rec = build_in_tx(&mut tx, id).await?;
        if rec.build.status.is_final() {
            return Err(StoreError::Conflict(format!(
                "build {id} has already finished"
            )));
        }
        let mut app = app_in_tx(&mut tx, &rec.build.app).await?;
        for process_type in artifact.processes.keys() {
            app.formation.entry(process_type.clone()).or_insert(1);
        }
        sqlx::query("UPDATE apps SET formation = ? WHERE name = ?")
            .bind(to_json(&app.formation))
            .bind(&app.name)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE builds SET status = 'succeeded', artifact = ?, finished_at = ? WHERE id = ?",
        )
        .bind(to_json(artifact))
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let rec = build_in_tx(&mut tx, id).await?;
        // The app's config as it is now, not as it was at upload: a config
        // change made while this built must not be undone by it.
        let release = insert_release(
            &mut tx,
            &app,
            &rec,
            &app.config,
            &app.secrets,
            &format!("deploy {}", short_id(id)),
            &rec.created_by,
            true,
            now,
        )
        .await?;
        sqlx::query("UPDATE builds SET release = ? WHERE id = ?")
            .bind(release.version as i64)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        bump(&mut tx).await?;
        let rec = build_in_tx(&mut tx, id).await?;
        tx.commit().await?;
        Ok((rec, release))
    }

    async fn release(&self, app: &str, version: u32) -> Result<Option<Release>> {
        sqlx::query("SELECT * FROM releases WHERE app = ? AND version = ?")
            .bind(app)
            .bind(version as i64)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(release_from_row)
            .transpose()
    }

    async fn releases(&self, app: &str) -> Result<Vec<Release>> {
        sqlx::query("SELECT * FROM releases WHERE app = ? ORDER BY version DESC")
            .bind(app)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(release_from_row)
            .collect()
    }

    async fn pending_releases(&self) -> Result<Vec<Release>> {
        sqlx::query("SELECT * FROM releases WHERE status = 'pending' ORDER BY created_at")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(release_from_row)
            .collect()
    }

    async fn claim_release(&self, app: &str, version: u32, _node: &str) -> Result<Release> {
        let (_w, mut tx) = self.begin_write().await?;
        let n = sqlx::query(
            "UPDATE releases SET status = 'releasing' WHERE app = ? AND version = ? AND status = 'pending'",
        )
        .bind(app)
        .bind(version as i64)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 0 {
            release_in_tx(&mut tx, app, version).await?;
            return Err(StoreError::Conflict(format!(
                "release v{version} of {app} is not waiting for its release phase"
            )));
        }
        bump(&mut tx).await?;
        let r = release_in_tx(&mut tx, app, version).await?;
        tx.commit().await?;
        Ok(r)
    }

    async fn finish_release_phase(
        &self,
        app: &str,
        version: u32,
        error: Option<&str>,
    ) -> Result<Release> {
        let (_w, mut tx) = self.begin_write().await?;
        let r = release_in_tx(&mut tx, app, version).await?;
        if r.status != ReleaseStatus::Releasing {
            return Err(StoreError::Conflict(format!(
                "release v{version} of {app} is {}, not releasing",
                r.status.as_str()
            )));
        }
        match error {
            None => {
                let rec = app_in_tx(&mut tx, app).await?;
                start_rollout(
                    &mut tx,
                    &rec,
                    version,
                    rec.generations.clone(),
                    &r.description,
                    berth_model::now_millis(),
                )
                .await?;
            }
            Some(e) => {
                set_release_status(&mut tx, app, version, ReleaseStatus::Failed, Some(e)).await?
            }
        }
        bump(&mut tx).await?;
        let r = release_in_tx(&mut tx, app, version).await?;
        tx.commit().await?;
        Ok(r)
    }

    async fn replace_node_instances(
        &self,
        node: &str,
        instances: &[Instance],
        now: UnixMillis,
    ) -> Result<bool> {
        let (_w, mut tx) = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO nodes (name, last_seen) VALUES (?, ?) \
             ON CONFLICT (name) DO UPDATE SET last_seen = excluded.last_seen",
        )
        .bind(node)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let before: Vec<String> = sqlx::query_scalar(
            "SELECT data FROM instances WHERE node = ? ORDER BY app, release, process_type, idx, generation",
        )
        .bind(node)
        .fetch_all(&mut *tx)
        .await?;
        let mut sorted: Vec<&Instance> = instances.iter().collect();
        sorted.sort_by_key(|i| InstanceKey::from(*i));
        let after: Vec<String> = sorted.iter().map(|i| to_json(*i)).collect();
        let changed = before != after;
        if changed {
            sqlx::query("DELETE FROM instances WHERE node = ?")
                .bind(node)
                .execute(&mut *tx)
                .await?;
            for (i, data) in sorted.iter().zip(&after) {
                sqlx::query(
                    "INSERT INTO instances (node, app, release, process_type, idx, generation, data) VALUES (?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(node)
                .bind(&i.app)
                .bind(i.release as i64)
                .bind(&i.process_type)
                .bind(i.index as i64)
                .bind(i.generation as i64)
                .bind(data)
                .execute(&mut *tx)
                .await?;
            }
            bump(&mut tx).await?;
        }
        tx.commit().await?;
        Ok(changed)
    }

    async fn instances(&self, app: Option<&str>) -> Result<Vec<Instance>> {
        let rows: Vec<String> =
            match app {
                Some(app) => sqlx::query_scalar(
                    "SELECT data FROM instances WHERE app = ? ORDER BY process_type, idx, release, generation",
                )
                .bind(app)
                .fetch_all(&self.pool)
                .await?,
                None => {
                    sqlx::query_scalar(
                        "SELECT data FROM instances ORDER BY app, process_type, idx, release, generation",
                    )
                    .fetch_all(&self.pool)
                    .await?
                }
            };
        rows.iter().map(|d| from_json("instance", d)).collect()
    }

    async fn nodes(&self) -> Result<Vec<(String, UnixMillis)>> {
        let rows = sqlx::query("SELECT name, last_seen FROM nodes ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("name")?, r.try_get("last_seen")?)))
            .collect()
    }

    async fn append_logs(&self, lines: &[NewLogLine]) -> Result<i64> {
        let (_w, mut tx) = self.begin_write().await?;
        let mut last = 0;
        let mut apps = std::collections::BTreeSet::new();
        for l in lines {
            last = sqlx::query_scalar(
                "INSERT INTO logs (app, ts, source, scope, line, event) VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
            )
            .bind(&l.app)
            .bind(l.ts)
            .bind(&l.source)
            .bind(&l.scope)
            .bind(&l.line)
            .bind(l.event.map(EventKind::as_str))
            .fetch_one(&mut *tx)
            .await?;
            apps.insert(&l.app);
        }
        // Keep the log bounded: prune an app's oldest lines past the limit,
        // only now and then (every ~1000 ids) so appends stay cheap.
        if last / 1000 != (last - lines.len() as i64) / 1000 {
            for app in apps {
                sqlx::query(
                    "DELETE FROM logs WHERE app = ? AND id <= \
                     (SELECT id FROM logs WHERE app = ? ORDER BY id DESC LIMIT 1 OFFSET ?)",
                )
                .bind(app)
                .bind(app)
                .bind(LOG_LINES_KEPT)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(last)
    }

    async fn logs(
        &self,
        app: &str,
        after: Option<i64>,
        limit: u32,
        scope: Option<&str>,
    ) -> Result<Vec<LogLine>> {
        let rows = match after {
            Some(after) => {
                sqlx::query(
                    "SELECT * FROM logs WHERE app = ? AND id > ? AND (? IS NULL OR scope = ?) ORDER BY id LIMIT ?",
                )
                .bind(app)
                .bind(after)
                .bind(scope)
                .bind(scope)
                .bind(limit as i64)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                let mut rows = sqlx::query(
                    "SELECT * FROM logs WHERE app = ? AND (? IS NULL OR scope = ?) ORDER BY id DESC LIMIT ?",
                )
                .bind(app)
                .bind(scope)
                .bind(scope)
                .bind(limit as i64)
                .fetch_all(&self.pool)
                .await?;
                rows.reverse();
                rows
            }
        };
        rows.iter().map(log_from_row).collect()
    }

    async fn change_config(
        &self,
        app: &str,
        edit: &ConfigEdit,
        description: &str,
        created_by: &str,
        now: UnixMillis,
    ) -> Result<(AppRecord, Option<Release>)> {
        let (_w, mut tx) = self.begin_write().await?;
        let mut rec = app_in_tx(&mut tx, app).await?;
        for name in edit.set.keys() {
            if rec.secrets.contains_key(name) && !edit.unset_secrets.contains(name) {
                return Err(StoreError::Conflict(format!(
                    "{name} is a secret of {app}; `berth secrets unset {name} --app {app}` first if it should become a plain config var"
                )));
            }
        }
        for name in edit.set_secrets.keys() {
            if rec.config.contains_key(name) && !edit.unset.contains(name) {
                return Err(StoreError::Conflict(format!(
                    "{name} is a plain config var of {app}; `berth config unset {name} --app {app}` first to make it a secret"
                )));
            }
        }
        for name in &edit.unset {
            rec.config.remove(name);
        }
        for name in &edit.unset_secrets {
            rec.secrets.remove(name);
        }
        rec.config
            .extend(edit.set.iter().map(|(k, v)| (k.clone(), v.clone())));
        for (name, sealed) in &edit.set_secrets {
            let version: i64 = sqlx::query_scalar(
                "SELECT COALESCE(MAX(version), 0) + 1 FROM secrets WHERE app = ? AND name = ?",
            )
            .bind(app)
            .bind(name)
            .fetch_one(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO secrets (app, name, version, sealed, created_at) VALUES (?, ?, ?, ?, ?)",
            )
            .bind(app)
            .bind(name)
            .bind(version)
            .bind(sealed)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            rec.secrets.insert(name.clone(), version as u32);
        }
        sqlx::query("UPDATE apps SET config = ?, secrets = ? WHERE name = ?")
            .bind(to_json(&rec.config))
            .bind(to_json(&rec.secrets))
            .bind(app)
            .execute(&mut *tx)
            .await?;
        // The newest release is the base: a rolling one if a rollout is on.
        let base = rec
            .rollout
            .as_ref()
            .map(|r| r.release)
            .or(rec.current_release);
        let release = match base {
            Some(v) => {
                let base = release_in_tx(&mut tx, app, v).await?;
                let build = reusable_build(&mut tx, app, &base).await?;
                Some(
                    insert_release(
                        &mut tx,
                        &rec,
                        &build,
                        &rec.config,
                        &rec.secrets,
                        description,
                        created_by,
                        true,
                        now,
                    )
                    .await?,
                )
            }
            None => None,
        };
        bump(&mut tx).await?;
        let rec = app_in_tx(&mut tx, app).await?;
        tx.commit().await?;
        Ok((rec, release))
    }

    async fn secrets(&self, app: &str) -> Result<Vec<SealedSecret>> {
        let rows = sqlx::query(
            "SELECT name, version, sealed FROM secrets WHERE app = ? ORDER BY name, version",
        )
        .bind(app)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(SealedSecret {
                    app: app.to_string(),
                    name: r.try_get("name")?,
                    version: r.try_get::<i64, _>("version")? as u32,
                    sealed: r.try_get("sealed")?,
                })
            })
            .collect()
    }

    async fn rollback(
        &self,
        app: &str,
        version: u32,
        created_by: &str,
        now: UnixMillis,
    ) -> Result<Release> {
        let (_w, mut tx) = self.begin_write().await?;
        let rec = app_in_tx(&mut tx, app).await?;
        let target = release_in_tx(&mut tx, app, version).await?;
        if matches!(
            target.status,
            ReleaseStatus::Pending | ReleaseStatus::Releasing
        ) {
            return Err(StoreError::Conflict(format!(
                "v{version} of {app} has not been released yet; roll back to a release that went live"
            )));
        }
        let build = reusable_build(&mut tx, app, &target).await?;
        // Rolling back restores the config too, as Heroku does: v2's code
        // with today's config is a combination that never ran.
        sqlx::query("UPDATE apps SET config = ?, secrets = ? WHERE name = ?")
            .bind(to_json(&target.config))
            .bind(to_json(&target.secrets))
            .bind(app)
            .execute(&mut *tx)
            .await?;
        let release = insert_release(
            &mut tx,
            &rec,
            &build,
            &target.config,
            &target.secrets,
            &format!("rollback to v{version}"),
            created_by,
            false,
            now,
        )
        .await?;
        bump(&mut tx).await?;
        tx.commit().await?;
        Ok(release)
    }

    async fn restart(
        &self,
        app: &str,
        process_types: &[String],
        now: UnixMillis,
    ) -> Result<Rollout> {
        let (_w, mut tx) = self.begin_write().await?;
        let rec = app_in_tx(&mut tx, app).await?;
        let Some(current) = rec.current_release else {
            return Err(StoreError::Conflict(format!(
                "{app} has no live release to restart; deploy it first"
            )));
        };
        if let Some(r) = &rec.rollout {
            return Err(StoreError::Conflict(format!(
                "{app} is rolling out v{} ({}); restart once it has finished",
                r.release, r.description
            )));
        }
        let mut generations = rec.generations.clone();
        let types: Vec<&String> = if process_types.is_empty() {
            rec.formation.keys().collect()
        } else {
            process_types.iter().collect()
        };
        for t in &types {
            *generations.entry((*t).clone()).or_insert(0) += 1;
        }
        let description = if process_types.is_empty() {
            "restart".to_string()
        } else {
            format!("restart {}", process_types.join(" "))
        };
        let rollout = start_rollout(&mut tx, &rec, current, generations, &description, now).await?;
        bump(&mut tx).await?;
        tx.commit().await?;
        Ok(rollout)
    }

    async fn complete_rollout(&self, app: &str, version: u32) -> Result<()> {
        let (_w, mut tx) = self.begin_write().await?;
        let rec = app_in_tx(&mut tx, app).await?;
        let Some(rollout) = rec.rollout.filter(|r| r.release == version) else {
            return Err(StoreError::Conflict(format!(
                "v{version} of {app} is not rolling out"
            )));
        };
        if rec.current_release != Some(version) {
            sqlx::query(
                "UPDATE releases SET status = 'superseded' WHERE app = ? AND status = 'live'",
            )
            .bind(app)
            .execute(&mut *tx)
            .await?;
            set_release_status(&mut tx, app, version, ReleaseStatus::Live, None).await?;
        }
        sqlx::query(
            "UPDATE apps SET current_release = ?, generations = ?, rollout = NULL WHERE name = ?",
        )
        .bind(version as i64)
        .bind(to_json(&rollout.generations))
        .bind(app)
        .execute(&mut *tx)
        .await?;
        bump(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn fail_rollout(&self, app: &str, version: u32, error: &str) -> Result<()> {
        let (_w, mut tx) = self.begin_write().await?;
        let rec = app_in_tx(&mut tx, app).await?;
        if rec.rollout.as_ref().is_none_or(|r| r.release != version) {
            return Err(StoreError::Conflict(format!(
                "v{version} of {app} is not rolling out"
            )));
        }
        // A failed restart leaves its (live) release alone.
        if rec.current_release != Some(version) {
            set_release_status(&mut tx, app, version, ReleaseStatus::Failed, Some(error)).await?;
        }
        set_app_json::<Rollout>(&mut tx, app, "rollout", None).await?;
        bump(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn note_rollout_progress(
        &self,
        app: &str,
        version: u32,
        up: u32,
        now: UnixMillis,
    ) -> Result<()> {
        let (_w, mut tx) = self.begin_write().await?;
        let rec = app_in_tx(&mut tx, app).await?;
        if let Some(mut rollout) = rec.rollout.filter(|r| r.release == version) {
            rollout.up = up;
            rollout.progress_at = now;
            // Bookkeeping for the deadline only: nobody acts on it, so no bump.
            set_app_json(&mut tx, app, "rollout", Some(&rollout)).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn set_settings(&self, app: &str, settings: &AppSettings) -> Result<AppRecord> {
        let (_w, mut tx) = self.begin_write().await?;
        app_in_tx(&mut tx, app).await?;
        set_app_json(&mut tx, app, "settings", Some(settings)).await?;
        bump(&mut tx).await?;
        let rec = app_in_tx(&mut tx, app).await?;
        tx.commit().await?;
        Ok(rec)
    }

    async fn collect_builds(&self, app: &str, keep: usize, now: UnixMillis) -> Result<Vec<String>> {
        let (_w, mut tx) = self.begin_write().await?;
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM builds b WHERE app = ? AND status = 'succeeded' AND collected_at IS NULL \
             AND NOT EXISTS (SELECT 1 FROM releases r WHERE r.app = b.app AND r.build_id = b.id \
                 AND (r.status IN ('live', 'rolling', 'pending', 'releasing') \
                      OR EXISTS (SELECT 1 FROM instances i WHERE i.app = r.app AND i.release = r.version))) \
             AND id NOT IN (SELECT id FROM builds WHERE app = ? AND status = 'succeeded' AND collected_at IS NULL \
                 ORDER BY created_at DESC, release DESC LIMIT ?)",
        )
        .bind(app)
        .bind(app)
        .bind(keep as i64)
        .fetch_all(&mut *tx)
        .await?;
        for id in &ids {
            sqlx::query("UPDATE builds SET collected_at = ? WHERE id = ?")
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        if !ids.is_empty() {
            bump(&mut tx).await?;
        }
        tx.commit().await?;
        Ok(ids)
    }

    async fn collected_builds(&self, since: UnixMillis) -> Result<Vec<(String, CollectedBuild)>> {
        let rows = sqlx::query(
            "SELECT id, app, node FROM builds WHERE collected_at IS NOT NULL AND collected_at >= ? AND node IS NOT NULL ORDER BY collected_at",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("node")?,
                    CollectedBuild {
                        app: r.try_get("app")?,
                        build_id: r.try_get("id")?,
                    },
                ))
            })
            .collect()
    }

    async fn record_router(
        &self,
        name: &str,
        applied: Revision,
        sessions: &[DepartedSessions],
        now: UnixMillis,
    ) -> Result<()> {
        let sessions = to_json(&sessions);
        let (_w, mut tx) = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO routers (name, applied, sessions, last_seen) VALUES (?, ?, ?, ?) \
             ON CONFLICT (name) DO UPDATE SET applied = excluded.applied, \
             sessions = excluded.sessions, last_seen = excluded.last_seen",
        )
        .bind(name)
        .bind(applied as i64)
        .bind(sessions)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn create_run(
        &self,
        app: &str,
        release: u32,
        node: &str,
        run: &NewRun,
        created_by: &str,
        now: UnixMillis,
    ) -> Result<Run> {
        let (_w, mut tx) = self.begin_write().await?;
        let created = runs::create(&mut tx, app, release, node, run, created_by, now).await?;
        bump(&mut tx).await?;
        tx.commit().await?;
        Ok(created)
    }

    async fn run(&self, app: &str, number: u32) -> Result<Option<Run>> {
        runs::get(&self.pool, app, number).await
    }

    async fn active_runs(&self, app: Option<&str>) -> Result<Vec<Run>> {
        runs::active(&self.pool, app).await
    }

    async fn kill_run(&self, app: &str, number: u32) -> Result<Run> {
        let (_w, mut tx) = self.begin_write().await?;
        let run = runs::kill(&mut tx, app, number).await?;
        bump(&mut tx).await?;
        tx.commit().await?;
        Ok(run)
    }

    async fn report_run(
        &self,
        app: &str,
        number: u32,
        report: &RunReport,
        now: UnixMillis,
    ) -> Result<Run> {
        let (_w, mut tx) = self.begin_write().await?;
        let (run, ended) = runs::report(&mut tx, app, number, report, now).await?;
        // An ended run leaves its node's desired state.
        if ended {
            bump(&mut tx).await?;
        }
        tx.commit().await?;
        Ok(run)
    }

    async fn routers(&self) -> Result<Vec<RouterSeen>> {
        let rows =
            sqlx::query("SELECT name, applied, sessions, last_seen FROM routers ORDER BY name")
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| {
                Ok(RouterSeen {
                    name: r.try_get("name")?,
                    applied: r.try_get::<i64, _>("applied")? as Revision,
                    sessions: from_json("router sessions", &r.try_get::<String, _>("sessions")?)?,
                    last_seen: r.try_get("last_seen")?,
                })
            })
            .collect()
    }

    async fn events(&self, app: &str, after: i64, limit: u32) -> Result<Vec<LogLine>> {
        let rows = sqlx::query(
            "SELECT * FROM logs WHERE app = ? AND id > ? AND event IS NOT NULL ORDER BY id LIMIT ?",
        )
        .bind(app)
        .bind(after)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(log_from_row).collect()
    }

    async fn last_log_id(&self) -> Result<i64> {
        let v: Option<i64> = sqlx::query_scalar("SELECT MAX(id) FROM logs")
            .fetch_one(&self.pool)
            .await?;
        Ok(v.unwrap_or(0))
    }
}

fn log_from_row(r: &sqlx::sqlite::SqliteRow) -> Result<LogLine> {
    let event: Option<String> = r.try_get("event")?;
    Ok(LogLine {
        id: r.try_get("id")?,
        app: r.try_get("app")?,
        ts: r.try_get("ts")?,
        source: r.try_get("source")?,
        scope: r.try_get("scope")?,
        line: r.try_get("line")?,
        event: event.as_deref().and_then(EventKind::parse),
    })
}

/// The first 8 characters of an id, as users see it.
pub fn short_id(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}
