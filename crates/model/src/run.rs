//! One-off processes (`berth run`): the resource, the agent's job, and the
//! attach protocol spoken over the WebSocket the control plane relays.
//!
//! A run is desired state like an instance: the control plane records it
//! (`pending`), the node it is placed on starts it once and reports
//! `running`, then `exited` with its status. `berth ps:kill` records a kill
//! request, which takes the run out of the node's desired state; the agent
//! stops what it runs but is no longer asked to.
//!
//! # Attach protocol
//! The CLI and the agent each open a WebSocket to the control plane, which
//! pairs them by run and relays messages unchanged (agents may sit behind
//! NAT, so the control plane is the only address both can reach). Every
//! message is binary; its first byte is the [`Channel`], the rest the
//! payload — the framing of Kubernetes' `channel.k8s.io`, with a control
//! channel carrying JSON [`Control`] messages both ways.

use serde::{Deserialize, Serialize};

use crate::UnixMillis;

/// Lifecycle of a one-off process; `Exited` is final.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Recorded; its node has not started it yet.
    Pending,
    Running,
    Exited,
}

impl RunState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Exited => "exited",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => Self::Pending,
            "running" => Self::Running,
            "exited" => Self::Exited,
            _ => return None,
        })
    }
}

/// A one-off process of an app, `run.N`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Run {
    pub app: String,
    /// `N` of `run.N`, counted per app.
    pub number: u32,
    /// The release whose build and config it runs with.
    pub release: u32,
    /// The shell command line.
    pub command: String,
    /// Attached to a caller through the control plane; otherwise detached,
    /// with its output in the app's log.
    pub attach: bool,
    /// Whether its stdio is a pseudo-terminal (attached runs only).
    pub tty: bool,
    pub node: String,
    pub state: RunState,
    pub pid: Option<u32>,
    pub created_at: UnixMillis,
    pub created_by: String,
    pub started_at: Option<UnixMillis>,
    pub finished_at: Option<UnixMillis>,
    /// The exit status, shell-style (128 + N when killed by signal N);
    /// `None` while running, or when it was lost with its agent.
    pub exit_code: Option<i32>,
    /// How it ended: "exited with status 0", "killed by SIGKILL (out of
    /// memory)", "killed by `berth ps:kill`".
    pub outcome: Option<String>,
    /// `berth ps:kill` was asked for.
    pub kill_requested: bool,
}

impl Run {
    /// `run.N`: the name `berth ps`, `ps:kill` and the log use.
    pub fn name(&self) -> String {
        run_name(self.number)
    }
}

/// `run.N`.
pub fn run_name(number: u32) -> String {
    format!("run.{number}")
}

/// The number of a `run.N` name; `N` alone is accepted too.
pub fn parse_run_name(name: &str) -> Option<u32> {
    name.strip_prefix("run.").unwrap_or(name).parse().ok()
}

/// Body of `POST /v1/apps/{app}/runs`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NewRun {
    /// A shell command line.
    pub command: String,
    /// The caller will attach; without it the run is detached.
    pub attach: bool,
    pub tty: bool,
}

/// A one-off process a node must run (while it is in the node's desired
/// state) — started once, never restarted.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RunJob {
    pub app: String,
    pub number: u32,
    pub release: u32,
    pub command: String,
    pub env: std::collections::BTreeMap<String, String>,
    /// The artifact directory.
    pub dir: String,
    pub attach: bool,
    pub tty: bool,
    #[serde(default)]
    pub limits: crate::ResourceLimits,
    /// `Pending` runs are to be started; a `Running` run the agent does not
    /// know was lost (its agent restarted) and is reported so.
    pub state: RunState,
}

/// Body of `PUT /v1/apps/{app}/runs/{n}/status`: what the agent saw.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RunReport {
    pub state: RunState,
    pub pid: Option<u32>,
    pub exit_code: Option<i32>,
    pub outcome: Option<String>,
}

/// The first byte of every attach message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Channel {
    /// Caller → process.
    Stdin = 0,
    /// Process → caller (a terminal's whole output, with a PTY).
    Stdout = 1,
    Stderr = 2,
    /// JSON [`Control`] messages, both ways.
    Control = 3,
}

impl Channel {
    fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            0 => Self::Stdin,
            1 => Self::Stdout,
            2 => Self::Stderr,
            3 => Self::Control,
            _ => return None,
        })
    }
}

/// Control messages of the attach protocol.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Control {
    /// Caller → agent, first message: start the process (with this window
    /// size and `TERM` when it has a terminal). Nothing runs before the
    /// caller is there to see it.
    Start {
        cols: u16,
        rows: u16,
        #[serde(default)]
        term: Option<String>,
    },
    /// Caller → agent: the caller's terminal changed size.
    Resize { cols: u16, rows: u16 },
    /// Caller → agent: no more input (non-terminal runs; a terminal sends
    /// Ctrl-D as data instead).
    Eof,
    /// Caller → agent: deliver this signal ("INT", "TERM", …) to the process
    /// group (non-terminal runs; a terminal's Ctrl-C is data).
    Signal { name: String },
    /// Agent → caller, last message: how the process ended.
    Exit { code: Option<i32>, outcome: String },
    /// Agent → caller: the process could not be started.
    Error { message: String },
}

/// Encodes one attach message.
pub fn frame(channel: Channel, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 1);
    out.push(channel as u8);
    out.extend_from_slice(payload);
    out
}

/// Encodes a control message.
pub fn control_frame(control: &Control) -> Vec<u8> {
    // Serialising our own enum cannot fail.
    frame(
        Channel::Control,
        &serde_json::to_vec(control).unwrap_or_default(),
    )
}

/// A decoded attach message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Data(Channel, Vec<u8>),
    Control(Control),
}

/// Decodes one attach message; `None` for an empty message, an unknown
/// channel or an unreadable control message (peers ignore what they do not
/// understand, so the protocol can grow).
pub fn parse_frame(bytes: &[u8]) -> Option<Message> {
    let (&first, payload) = bytes.split_first()?;
    match Channel::from_byte(first)? {
        Channel::Control => serde_json::from_slice(payload).ok().map(Message::Control),
        channel => Some(Message::Data(channel, payload.to_vec())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let data = frame(Channel::Stdout, b"hi\n");
        assert_eq!(
            parse_frame(&data),
            Some(Message::Data(Channel::Stdout, b"hi\n".to_vec()))
        );
        let exit = Control::Exit {
            code: Some(3),
            outcome: "exited with status 3".into(),
        };
        assert_eq!(
            parse_frame(&control_frame(&exit)),
            Some(Message::Control(exit))
        );
        assert_eq!(parse_frame(&[]), None);
        assert_eq!(parse_frame(&[9, 1]), None, "unknown channels are ignored");
    }

    #[test]
    fn run_names() {
        assert_eq!(run_name(4), "run.4");
        assert_eq!(parse_run_name("run.4"), Some(4));
        assert_eq!(parse_run_name("4"), Some(4));
        assert_eq!(parse_run_name("web.1"), None);
    }
}
