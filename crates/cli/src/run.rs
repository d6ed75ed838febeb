//! `berth run` and `berth ps:kill`: one-off processes of the live release.
//!
//! Attached, the caller's terminal (or pipes) is joined to the process
//! through the control plane's WebSocket relay: the terminal goes to raw
//! mode so every key — Ctrl-C and Ctrl-D included — reaches the remote
//! terminal, window size changes follow, and `berth run` exits with the
//! process's status.

use std::io::{IsTerminal, Read, Write};

use berth_client::attach::Message;
use berth_client::Client;
use berth_model::run::{control_frame, frame, parse_frame, Channel, Control};
use berth_model::NewRun;
use futures_util::{SinkExt, StreamExt};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

use crate::ExitWith;

/// Starts `command` as a one-off process of `app`'s live release.
pub async fn run(
    client: &Client,
    app: &str,
    command: &[String],
    detach: bool,
    no_tty: bool,
) -> anyhow::Result<()> {
    let command = command_line(command);
    let tty =
        !detach && !no_tty && std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let run = client
        .create_run(
            app,
            &NewRun {
                command: command.clone(),
                attach: !detach,
                tty,
            },
        )
        .await?;
    let name = run.name();
    if detach {
        println!(
            "Running `{command}` on {app} as {name} (v{}), detached.",
            run.release
        );
        println!("Its output: `berth logs --app {app} --source {name}`; stop it: `berth ps:kill {name} --app {app}`");
        return Ok(());
    }
    eprintln!("Running `{command}` on {app} as {name} (v{})…", run.release);
    let mut socket = client.attach_run(app, run.number).await?;
    let (cols, rows) = window_size();
    let start = Control::Start {
        cols,
        rows,
        term: std::env::var("TERM").ok(),
    };
    socket
        .send(Message::Binary(control_frame(&start).into()))
        .await?;
    let raw = if tty { Some(RawMode::enable()?) } else { None };
    let ended = session(&mut socket, tty).await;
    drop(raw);
    match ended? {
        Ended::Exit { code: Some(0), .. } => Ok(()),
        Ended::Exit {
            code: Some(code),
            outcome,
        } => {
            // A status says nothing of a kill (an OOM kill least of all).
            if outcome.starts_with("killed") {
                eprintln!("{name} {outcome}");
            }
            Err(ExitWith(code.clamp(1, 255) as u8).into())
        }
        Ended::Exit { code: None, outcome } => anyhow::bail!("{name} {outcome}"),
        Ended::Error(message) => anyhow::bail!("{message}"),
        Ended::Lost => anyhow::bail!(
            "lost the connection to {name}; it may still be running: `berth ps --app {app}` shows it, `berth ps:kill {name} --app {app}` stops it"
        ),
    }
}

/// `berth ps:kill run.N`: stops a one-off process.
pub async fn kill(client: &Client, app: &str, name: &str) -> anyhow::Result<()> {
    let Some(number) = berth_model::run::parse_run_name(name) else {
        anyhow::bail!(
            "{name:?} is not a one-off process (run.N); instances are replaced with `berth restart --app {app} [TYPE]`"
        );
    };
    let run = client.kill_run(app, number).await?;
    println!("Stopping {} (`{}`)", run.name(), run.command);
    Ok(())
}

/// How a session ended.
enum Ended {
    Exit {
        code: Option<i32>,
        outcome: String,
    },
    Error(String),
    /// The connection closed without an exit status.
    Lost,
}

/// Relays the caller's input, signals and window size to the process and
/// its output back, until the process ends.
async fn session(socket: &mut berth_client::attach::Socket, tty: bool) -> anyhow::Result<Ended> {
    let mut input = stdin_reader();
    let mut input_open = true;
    let mut winch = signal(SignalKind::window_change())?;
    // With a terminal in raw mode Ctrl-C is a byte like any other; these
    // only fire for pipes, or for signals sent to `berth run` itself.
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut hangup = signal(SignalKind::hangup())?;
    let mut stdout = std::io::stdout();
    let mut stderr = std::io::stderr();
    loop {
        let outgoing = tokio::select! {
            message = socket.next() => match message {
                Some(Ok(Message::Binary(bytes))) => {
                    match parse_frame(&bytes) {
                        Some(berth_model::run::Message::Data(Channel::Stdout, data)) => {
                            stdout.write_all(&data)?;
                            stdout.flush()?;
                        }
                        Some(berth_model::run::Message::Data(Channel::Stderr, data)) => {
                            stderr.write_all(&data)?;
                        }
                        Some(berth_model::run::Message::Control(Control::Exit { code, outcome })) => {
                            return Ok(Ended::Exit { code, outcome });
                        }
                        Some(berth_model::run::Message::Control(Control::Error { message })) => {
                            return Ok(Ended::Error(message));
                        }
                        _ => {}
                    }
                    None
                }
                Some(Ok(Message::Close(frame))) => {
                    return Ok(match frame {
                        Some(f) if !f.reason.is_empty() => Ended::Error(f.reason.to_string()),
                        _ => Ended::Lost,
                    });
                }
                Some(Ok(_)) => None,
                None | Some(Err(_)) => return Ok(Ended::Lost),
            },
            chunk = input.recv(), if input_open => match chunk {
                Some(data) => Some(frame(Channel::Stdin, &data)),
                None => {
                    input_open = false;
                    // A terminal never ends its input (Ctrl-D is data).
                    (!tty).then(|| control_frame(&Control::Eof))
                }
            },
            _ = winch.recv() => {
                let (cols, rows) = window_size();
                Some(control_frame(&Control::Resize { cols, rows }))
            }
            _ = interrupt.recv() => Some(signal_frame("INT")),
            _ = terminate.recv() => Some(signal_frame("TERM")),
            _ = hangup.recv() => Some(signal_frame("HUP")),
        };
        if let Some(bytes) = outgoing {
            if socket.send(Message::Binary(bytes.into())).await.is_err() {
                return Ok(Ended::Lost);
            }
        }
    }
}

fn signal_frame(name: &str) -> Vec<u8> {
    control_frame(&Control::Signal { name: name.into() })
}

/// Reads standard input on a thread of its own: a blocking read of a
/// terminal cannot be cancelled, and a runtime would wait for it at exit.
/// The channel closes at end of input.
fn stdin_reader() -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel(16);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = [0u8; 8192];
        while let Ok(n @ 1..) = stdin.read(&mut buf) {
            if tx.blocking_send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    rx
}

/// The caller's terminal size, 80×24 when there is none.
fn window_size() -> (u16, u16) {
    match rustix::termios::tcgetwinsize(std::io::stdout()) {
        Ok(ws) if ws.ws_col > 0 && ws.ws_row > 0 => (ws.ws_col, ws.ws_row),
        _ => (80, 24),
    }
}

/// The caller's terminal in raw mode until dropped: keys go to the remote
/// terminal unprocessed, and its echo is the only one.
struct RawMode {
    saved: rustix::termios::Termios,
}

impl RawMode {
    fn enable() -> anyhow::Result<Self> {
        let stdin = std::io::stdin();
        let saved = rustix::termios::tcgetattr(&stdin)?;
        let mut raw = saved.clone();
        raw.make_raw();
        rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &raw)?;
        Ok(Self { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = rustix::termios::tcsetattr(
            std::io::stdin(),
            rustix::termios::OptionalActions::Now,
            &self.saved,
        );
    }
}

/// The command line a shell on the node runs: one argument is taken as a
/// shell command line (`berth run "make && ./go"`); several are quoted so
/// that each reaches the program as given.
fn command_line(args: &[String]) -> String {
    match args {
        [one] => one.clone(),
        _ => args
            .iter()
            .map(|a| shell_quote(a))
            .collect::<Vec<_>>()
            .join(" "),
    }
}

fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@%+".contains(&b));
    if plain {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_reach_the_program_as_given() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            command_line(&args(&["python", "-c", "print('a b')"])),
            r#"python -c 'print('\''a b'\'')'"#
        );
        assert_eq!(command_line(&args(&["make && ./go"])), "make && ./go");
        assert_eq!(command_line(&args(&["echo", ""])), "echo ''");
        assert_eq!(command_line(&args(&["ls", "-la", "/tmp"])), "ls -la /tmp");
    }
}
