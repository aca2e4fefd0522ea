//! A client for the toncenter v2 HTTP API (`sendBoc`, `runGetMethod`), the interface
//! public TON endpoints and our sandbox server (`contracts/scripts/toncenter-sandbox.js`)
//! share. Responses are `{"ok": bool, "result": ..., "error": "...", "code": n}`.

use base64::Engine;
use pupa_protocol::ton::MsgAddressInt;
use serde_json::{json, Value};

/// Why an API call failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Network or HTTP failure.
    #[error("HTTP: {0}")]
    Http(String),
    /// The API answered `ok: false`; `exit_code` is the contract's, when it rejected an
    /// external message.
    #[error("API refused (exit code {exit_code:?}): {message}")]
    Refused {
        /// The API's error text.
        message: String,
        /// TVM exit code parsed from `exitcode=N`, if present.
        exit_code: Option<i32>,
    },
    /// A response that does not have the documented shape.
    #[error("unexpected API response: {0}")]
    BadResponse(String),
}

/// Base URL such as `https://toncenter.com/api/v2` or `http://127.0.0.1:PORT/api/v2`.
pub struct TonApi {
    base: String,
    api_key: Option<String>,
    agent: ureq::Agent,
}

fn exit_code_of(msg: &str) -> Option<i32> {
    let at = msg.find("exitcode=")? + "exitcode=".len();
    let digits: String = msg[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '-')
        .collect();
    digits.parse().ok()
}

impl TonApi {
    /// A client for `base` (without a trailing slash), with an optional API key.
    pub fn new(base: &str, api_key: Option<String>) -> Self {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(std::time::Duration::from_secs(30)))
            .build();
        TonApi {
            base: base.trim_end_matches('/').to_string(),
            api_key,
            agent: config.into(),
        }
    }

    fn post(&self, method: &str, body: Value) -> Result<Value, ApiError> {
        let mut req = self.agent.post(&format!("{}/{method}", self.base));
        if let Some(k) = &self.api_key {
            req = req.header("X-API-Key", k);
        }
        let mut resp = req
            .send_json(&body)
            .map_err(|e| ApiError::Http(e.to_string()))?;
        let v: Value = resp
            .body_mut()
            .read_json()
            .map_err(|e| ApiError::Http(e.to_string()))?;
        if v.get("ok").and_then(Value::as_bool) == Some(true) {
            return v
                .get("result")
                .cloned()
                .ok_or_else(|| ApiError::BadResponse(v.to_string()));
        }
        let message = v
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("no error text")
            .to_string();
        Err(ApiError::Refused {
            exit_code: exit_code_of(&message),
            message,
        })
    }

    /// Posts a message BOC.
    pub fn send_boc(&self, boc: &[u8]) -> Result<(), ApiError> {
        let b64 = base64::engine::general_purpose::STANDARD.encode(boc);
        self.post("sendBoc", json!({ "boc": b64 })).map(|_| ())
    }

    /// Runs a get-method with integer arguments; returns the integer results.
    pub fn run_get_method(
        &self,
        addr: &MsgAddressInt,
        method: &str,
        args: &[&[u8; 32]],
    ) -> Result<Vec<u128>, ApiError> {
        let stack: Vec<Value> = args
            .iter()
            .map(|a| json!(["num", format!("0x{}", super::hex(&a[..]))]))
            .collect();
        let r = self.post(
            "runGetMethod",
            json!({ "address": addr.to_raw(), "method": method, "stack": stack }),
        )?;
        let exit = r
            .get("exit_code")
            .and_then(Value::as_i64)
            .ok_or_else(|| ApiError::BadResponse(r.to_string()))?;
        if exit != 0 {
            return Err(ApiError::Refused {
                message: format!("get-method {method} failed"),
                exit_code: Some(exit as i32),
            });
        }
        let items = r
            .get("stack")
            .and_then(Value::as_array)
            .ok_or_else(|| ApiError::BadResponse(r.to_string()))?;
        items
            .iter()
            .map(|it| {
                let s = it
                    .get(1)
                    .and_then(Value::as_str)
                    .ok_or_else(|| ApiError::BadResponse(it.to_string()))?;
                let hex = s
                    .strip_prefix("0x")
                    .ok_or_else(|| ApiError::BadResponse(it.to_string()))?;
                u128::from_str_radix(hex, 16).map_err(|_| ApiError::BadResponse(it.to_string()))
            })
            .collect()
    }

    /// The contract's `get_channel(guest, client)`: (last paid seq, cumulative paid).
    pub fn get_channel(
        &self,
        contract: &MsgAddressInt,
        guest: &[u8; 32],
        client: &[u8; 32],
    ) -> Result<(u64, u128), ApiError> {
        let v = self.run_get_method(contract, "get_channel", &[guest, client])?;
        match v[..] {
            [seq, paid] => Ok((
                u64::try_from(seq).map_err(|_| ApiError::BadResponse("seq".into()))?,
                paid,
            )),
            _ => Err(ApiError::BadResponse(format!(
                "get_channel returned {} values",
                v.len()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_exit_codes_from_error_text() {
        assert_eq!(
            super::exit_code_of("not accepted: exitcode=411, steps=40"),
            Some(411)
        );
        assert_eq!(super::exit_code_of("no code here"), None);
    }
}
