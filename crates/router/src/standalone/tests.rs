use std::io::Write;

use super::*;

fn problems(text: &str) -> Vec<String> {
    match parse(text, Path::new("/nonexistent")) {
        Ok(c) => panic!("expected problems, got {c:?}"),
        Err(Problems::Invalid(p)) => p,
        Err(Problems::Syntax(s)) => panic!("expected validation problems, got syntax error {s}"),
    }
}

#[test]
fn a_good_file() {
    let text = r#"
listen = "127.0.0.1:9090"
threads = 2

[[apps]]
name = "bench"
hosts = ["Bench.Localhost."]
backends = ["127.0.0.1:19001", "127.0.0.1:19002"]
balance = "round_robin"
"#;
    let Ok(c) = parse(text, Path::new("/")) else {
        panic!("valid file refused")
    };
    assert_eq!(c.listen, "127.0.0.1:9090".parse().expect("addr"));
    assert_eq!(c.threads, 2);
    let table = c.to_route_table(7);
    assert_eq!(table.revision, 7);
    assert_eq!(table.apps[0].hosts, ["bench.localhost"]);
    assert_eq!(table.apps[0].balance, Balance::RoundRobin);
    assert_eq!(table.apps[0].backends[1].addr, "127.0.0.1:19002");
}

#[test]
fn every_problem_is_listed_with_its_line() {
    let text = r#"listen = "nowhere"
threads = 0

[[apps]]
name = "Bad_Name"
hosts = []
backends = ["localhost"]

[[apps]]
name = "shop"
hosts = ["shop.localhost"]
backends = ["127.0.0.1:1"]
static_dir = "does-not-exist"

[[apps]]
name = "shop2"
hosts = ["SHOP.localhost", "bad host"]
backends = ["127.0.0.1:2", "127.0.0.1"]
static_prefix = "static"
"#;
    let p = problems(text);
    let all = p.join("\n");
    let expect = [
        ("line 1:", "listen \"nowhere\""),
        ("line 2:", "threads = 0"),
        ("line 5:", "invalid app name \"Bad_Name\""),
        ("line 4:", "app \"Bad_Name\" has no hosts"),
        ("line 7:", "backend \"localhost\" is not an address"),
        ("line 13:", "static_dir"),
        ("line 17:", "host \"shop.localhost\" of app \"shop2\" is already claimed by app \"shop\" on line 11"),
        ("line 17:", "invalid domain \"bad host\""),
        ("line 18:", "backend \"127.0.0.1\" is not an address"),
        ("line 19:", "static_prefix needs static_dir"),
    ];
    for (line, what) in expect {
        assert!(
            p.iter().any(|x| x.starts_with(line) && x.contains(what)),
            "missing {line} {what} in:\n{all}"
        );
    }
    assert_eq!(p.len(), expect.len(), "{all}");
}

#[test]
fn unknown_fields_and_syntax_errors_name_the_line() {
    for (text, line, what) in [
        (
            "listen = \"127.0.0.1:1\"\n[[apps]]\nname = \"a1\"\nhost = [\"x\"]\n",
            4,
            "unknown field `host`",
        ),
        (
            "[[apps]]\nname = \"ab\"\nbalance = \"fastest\"\n",
            3,
            "fastest",
        ),
        ("listen = \n", 1, ""),
    ] {
        match parse(text, Path::new("/")) {
            Err(Problems::Syntax(msg)) => {
                assert!(msg.contains(&format!("line {line}")), "{msg}");
                assert!(msg.contains(what), "{msg}");
            }
            _ => panic!("{text:?} should be a syntax error"),
        }
    }
}

#[test]
fn load_reports_the_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("router.toml");
    let mut f = std::fs::File::create(&path).expect("create");
    writeln!(f, "[[apps]]\nname = \"x\"\nhosts = [\"x.localhost\"]").expect("write");
    let err = load(&path).expect_err("bad name");
    let msg = err.to_string();
    assert!(msg.contains("router.toml"), "{msg}");
    assert!(
        msg.contains("1 problem(s)") && msg.contains("line 2:"),
        "{msg}"
    );

    let missing = load(&dir.path().join("nope.toml")).expect_err("missing");
    assert!(matches!(missing, ConfigError::Read { .. }));
}

#[test]
fn relative_static_dir_is_next_to_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("public")).expect("mkdir");
    let path = dir.path().join("router.toml");
    std::fs::write(
        &path,
        "[[apps]]\nname = \"site\"\nhosts = [\"site.localhost\"]\nstatic_dir = \"public\"\n",
    )
    .expect("write");
    let c = load(&path).expect("valid");
    let sf = c.apps[0].static_files.clone().expect("static files");
    assert_eq!(sf.url_prefix, "/static/");
    assert_eq!(Path::new(&sf.dir), dir.path().join("public"));
}

#[tokio::test]
async fn an_invalid_file_keeps_the_last_good_table() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("router.toml");
    let good =
        "[[apps]]\nname = \"one\"\nhosts = [\"one.localhost\"]\nbackends = [\"127.0.0.1:1\"]\n";
    std::fs::write(&path, good).expect("write");
    let routes = Routes::new();
    let mut w = FileWatcher::new(path.clone());

    assert!(matches!(w.check(&routes).await, Checked::Applied));
    assert_eq!(routes.revision(), 1);
    assert!(matches!(w.check(&routes).await, Checked::Unchanged));

    std::fs::write(
        &path,
        "[[apps]]\nname = \"one\"\nhosts = [\"one.localhost\"]\nbackends = [\"nope\"]\n",
    )
    .expect("write");
    assert!(matches!(w.check(&routes).await, Checked::Invalid));
    assert_eq!(routes.revision(), 1, "table untouched");
    assert!(routes.load().app("one.localhost").is_some());
    assert!(
        matches!(w.check(&routes).await, Checked::Unchanged),
        "an invalid file is reported once"
    );

    std::fs::remove_file(&path).expect("rm");
    assert!(matches!(w.check(&routes).await, Checked::Invalid));
    assert!(matches!(w.check(&routes).await, Checked::Unchanged));
    assert!(routes.load().app("one.localhost").is_some());
}
