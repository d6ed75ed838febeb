//! The WebSocket ends of an attached one-off process: the caller's
//! (`berth run`) and the agent's. Messages follow the attach protocol of
//! [`berth_model::run`].

use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::{error_chain, Client, ClientError};

/// An open attach session.
pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub use tokio_tungstenite::tungstenite::Message;

impl Client {
    /// Attaches the caller to run `number` of `app`.
    pub async fn attach_run(&self, app: &str, number: u32) -> Result<Socket, ClientError> {
        self.socket(&format!("/v1/apps/{app}/runs/{number}/attach"))
            .await
    }

    /// Attaches the agent's process end of run `number` of `app`.
    pub async fn run_process_socket(&self, app: &str, number: u32) -> Result<Socket, ClientError> {
        self.socket(&format!("/v1/apps/{app}/runs/{number}/process"))
            .await
    }

    async fn socket(&self, path: &str) -> Result<Socket, ClientError> {
        let url = match self.base.split_once("://") {
            Some(("https", rest)) => format!("wss://{rest}{path}"),
            Some((_, rest)) => format!("ws://{rest}{path}"),
            None => return Err(ClientError::BadUrl(self.base.clone())),
        };
        let mut req = url
            .as_str()
            .into_client_request()
            .map_err(|e| ClientError::BadUrl(format!("{url}: {e}")))?;
        if let Some(token) = &self.token {
            let value = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| ClientError::BadUrl("the API token has invalid characters".into()))?;
            req.headers_mut().insert("authorization", value);
        }
        match tokio_tungstenite::connect_async(req).await {
            Ok((socket, _)) => Ok(socket),
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                let status = resp.status();
                let body = resp
                    .body()
                    .as_deref()
                    .map(String::from_utf8_lossy)
                    .unwrap_or_default();
                let message = serde_json::from_str::<berth_model::ApiError>(&body)
                    .map(|e| e.error)
                    .unwrap_or_else(|_| format!("the server answered {status}"));
                Err(ClientError::Api {
                    status: status.as_u16(),
                    message,
                })
            }
            Err(e) => Err(ClientError::Unreachable {
                url: self.base.clone(),
                reason: error_chain(&e),
            }),
        }
    }
}
