//! Builds with the real uv and PyPI. Dependencies come through a cache in
//! `$CARGO_TARGET_TMPDIR/uv-cache`, so only the first run downloads.

mod fixtures;

use std::path::Path;

use fixtures::{venv_python, Kit, DJANGO_APP, FLASK_APP};

#[tokio::test]
async fn flask_app_builds_and_rebuilds_from_the_cache() {
    let kit = Kit::new();
    let first = kit.build("first", FLASK_APP).await;
    let artifact = first.artifact();
    assert!(Path::new(&artifact.dir).is_absolute());
    assert!(Path::new(&artifact.dir)
        .join(".venv/bin/gunicorn")
        .is_file());
    assert_eq!(venv_python(artifact, "import flask; print('ok')"), "ok");
    assert_eq!(
        artifact.processes.keys().collect::<Vec<_>>(),
        ["web"],
        "release is not a process"
    );
    assert_eq!(artifact.processes["web"], "gunicorn app:app");
    assert_eq!(
        artifact.release_command.as_deref(),
        Some("python -c 'print(\"migrated\")'")
    );
    assert_eq!(artifact.static_files, None);
    assert!(
        artifact.stack.starts_with("python 3.") && artifact.stack.ends_with("requirements.txt"),
        "{}",
        artifact.stack
    );
    assert!(first
        .log
        .contains(&"-----> Installing dependencies from requirements.txt with uv".to_owned()));

    // Same requirements, changed code: everything comes from the cache.
    let mut changed = FLASK_APP.to_vec();
    changed[2] = ("app.py", "from flask import Flask\napp = Flask('v2')\n");
    let second = kit.build("second", &changed).await;
    let artifact = second.artifact();
    println!(
        "first build {:?}, rebuild with changed code {:?}",
        first.took, second.took
    );
    let source = std::fs::read_to_string(Path::new(&artifact.dir).join("app.py")).unwrap();
    assert!(source.contains("v2"));
    // uv prints "Prepared N packages" only for what it had to download or
    // build; "Installed" alone means every package was linked from the cache.
    assert!(
        second.log.iter().any(|l| l.starts_with("Installed ")),
        "{:#?}",
        second.log
    );
    assert!(
        !second.log.iter().any(|l| l.starts_with("Prepared ")),
        "the rebuild downloaded something: {:#?}",
        second.log
    );
}

#[tokio::test]
async fn misspelt_requirement_fails_with_uv_output() {
    let kit = Kit::new();
    let built = kit
        .build(
            "typo",
            &[
                ("requirements.txt", "flaskk==99\n"),
                ("Procfile", "web: x\n"),
            ],
        )
        .await;
    let error = built.error();
    assert!(
        error.starts_with("installing dependencies from requirements.txt failed"),
        "{error}"
    );
    assert!(error.contains("check requirements.txt"), "{error}");
    assert!(
        error.contains("flaskk"),
        "uv's own words are quoted: {error}"
    );
    assert!(
        built.log.iter().any(|l| l.contains("flaskk")),
        "uv's output is streamed too"
    );
}

#[tokio::test]
async fn app_without_procfile_is_told_what_to_write() {
    let kit = Kit::new();
    let built = kit
        .build("noproc", &[("requirements.txt", "flask\n"), ("app.py", "")])
        .await;
    let error = built.error();
    assert!(error.starts_with("no Procfile found."), "{error}");
    assert!(error.contains("\n  web: gunicorn app:app\n"), "{error}");
    assert!(error.contains("uvicorn main:app"), "{error}");
}

#[tokio::test]
async fn uninstalled_python_version_is_refused_clearly() {
    let kit = Kit::new();
    let mut files = FLASK_APP.to_vec();
    files.push((".python-version", "3.99\n"));
    let error = kit.build("py399", &files).await.error();
    assert!(
        error.starts_with(
            "Python 3.99 was requested by .python-version, but only these interpreters are installed: "
        ),
        "{error}"
    );
    assert!(error.contains("3.11"), "lists what is installed: {error}");
    assert!(
        error.ends_with("change .python-version or install it on the node"),
        "{error}"
    );
}

#[tokio::test]
async fn archive_escaping_the_app_is_refused() {
    let kit = Kit::new();
    // tar's builder refuses such names, so write the header by hand.
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.as_old_mut().name[..7].copy_from_slice(b"../evil");
    header.set_size(1);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append(&header, &b"x"[..]).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &tar.into_inner().unwrap()).unwrap();
    let archive = kit.dir.path().join("evil.tar.gz");
    std::fs::write(&archive, gz.finish().unwrap()).unwrap();

    let built = kit.build_archive(&archive, "evil").await;
    assert_eq!(
        built.error(),
        "refusing archive entry \"../evil\": paths with '..' are not allowed"
    );
    assert!(!kit.dir.path().join("evil").is_file());
}

#[tokio::test]
async fn django_app_gets_a_web_process_and_static_files() {
    let mut kit = Kit::new();
    assert!(
        std::env::var_os("CARGO_MANIFEST_DIR").is_some(),
        "the leak check in the fixture's settings needs a variable to leak"
    );
    kit.opts
        .env
        .insert("SECRET_KEY".into(), "not-so-secret".into());
    let built = kit.build("django", DJANGO_APP).await;
    let artifact = built.artifact();
    println!("django build took {:?}", built.took);

    assert_eq!(
        artifact.processes["web"],
        "gunicorn mysite.wsgi:application"
    );
    let dir = Path::new(&artifact.dir);
    assert!(dir.join(".venv/bin/gunicorn").is_file());
    assert!(built
        .log
        .iter()
        .any(|l| l.starts_with("-----> Installing gunicorn")));
    let statics = artifact.static_files.as_ref().expect("static files");
    assert_eq!(statics.url_prefix, "/static/");
    assert_eq!(Path::new(&statics.dir), dir.join("staticfiles"));
    assert_eq!(
        std::fs::read_to_string(dir.join("staticfiles/site.css")).unwrap(),
        "body { color: teal; }\n"
    );
    assert!(
        artifact.stack.ends_with("requirements.txt, django"),
        "{}",
        artifact.stack
    );
}

#[tokio::test]
async fn pyproject_apps_build_with_and_without_a_lock() {
    let kit = Kit::new();
    let mut files = vec![
        (
            "pyproject.toml",
            "[project]\nname = \"demo\"\nversion = \"0.1.0\"\nrequires-python = \">=3.11\"\ndependencies = [\"flask\"]\n",
        ),
        ("Procfile", "web: flask --app app run\n"),
        ("app.py", "from flask import Flask\napp = Flask(__name__)\n"),
    ];
    let unlocked = kit.build("unlocked", &files).await;
    let artifact = unlocked.artifact();
    assert!(
        artifact.stack.ends_with("pyproject.toml"),
        "{}",
        artifact.stack
    );
    assert_eq!(venv_python(artifact, "import flask; print('ok')"), "ok");

    // `uv sync` wrote a lock; deploying with it takes the --frozen path.
    let lock = std::fs::read_to_string(Path::new(&artifact.dir).join("uv.lock")).unwrap();
    files.push(("uv.lock", &lock));
    let locked = kit.build("locked", &files).await;
    let artifact = locked.artifact();
    assert!(artifact.stack.ends_with("uv.lock"), "{}", artifact.stack);
    assert_eq!(venv_python(artifact, "import flask; print('ok')"), "ok");
}

#[tokio::test]
async fn missing_uv_is_reported_as_a_node_problem() {
    let mut kit = Kit::new();
    kit.opts.uv = kit.dir.path().join("no-such-uv");
    let error = kit.build("nouv", FLASK_APP).await.error();
    assert!(error.starts_with("could not start no-such-uv: "), "{error}");
    assert!(
        error.ends_with("check that it is installed on the node"),
        "{error}"
    );
}
