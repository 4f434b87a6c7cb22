//! The client of OpenAI-compatible endpoints: the only module that knows async-openai's types.
//!
//! It embeds text for the knowledge base (`/embeddings`) and carries the agent's `llm` policy's
//! turns (`/chat/completions` with function calling). Endpoints are configured from the
//! environment or flags, the key only from the environment (secrets never come from files or
//! flags), and transient failures are retried with backoff.

use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::Client;
use std::fmt;
use std::time::Duration;
use tracing::Instrument;

/// Base URL of an OpenAI-compatible embeddings endpoint, e.g. `http://127.0.0.1:8080/v1`.
pub const EMBEDDINGS_URL_VAR: &str = "CULPRIT_EMBEDDINGS_URL";
/// The embedding model's name at that endpoint.
pub const EMBEDDINGS_MODEL_VAR: &str = "CULPRIT_EMBEDDINGS_MODEL";
/// Base URL of an OpenAI-compatible chat endpoint for the agent's `llm` policy.
pub const LLM_URL_VAR: &str = "CULPRIT_LLM_URL";
/// The chat model's name at that endpoint.
pub const LLM_MODEL_VAR: &str = "CULPRIT_LLM_MODEL";
/// The API key, if the endpoint needs one (`OPENAI_API_KEY` is read when this is unset).
pub const API_KEY_VAR: &str = "CULPRIT_API_KEY";

/// Attempts per request: a refused connection or a timeout is retried, after 0.25 s, then 0.5 s.
const ATTEMPTS: u32 = 3;
const TIMEOUT: Duration = Duration::from_secs(60);
/// Inputs per embeddings request.
const BATCH: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    #[error("{var} is set but {missing} is not: set both to use that endpoint")]
    Incomplete { var: &'static str, missing: &'static str },
    #[error("{url}: {source}")]
    Request { url: String, source: Box<OpenAIError> },
    #[error("{url}: {message}")]
    Response { url: String, message: String },
}

/// An OpenAI-compatible endpoint and model. The key is redacted in `Debug`.
#[derive(Clone, PartialEq)]
pub struct Endpoint {
    pub base_url: String,
    pub model: String,
    api_key: Option<String>,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Endpoint {
    pub fn new(base_url: impl Into<String>, model: impl Into<String>, api_key: Option<String>) -> Self {
        Endpoint { base_url: base_url.into().trim_end_matches('/').to_string(), model: model.into(), api_key }
    }

    /// The embeddings endpoint named by `CULPRIT_EMBEDDINGS_URL` and `CULPRIT_EMBEDDINGS_MODEL`,
    /// if any; the key comes from `CULPRIT_API_KEY` or `OPENAI_API_KEY`.
    pub fn embeddings_from_env() -> Result<Option<Self>, LlmError> {
        Self::from_env(EMBEDDINGS_URL_VAR, EMBEDDINGS_MODEL_VAR, None, None)
    }

    /// The chat endpoint for the agent: `url` and `model` (flags) override `CULPRIT_LLM_URL` and
    /// `CULPRIT_LLM_MODEL`; the key comes from `CULPRIT_API_KEY` or `OPENAI_API_KEY`.
    pub fn chat_from_env(url: Option<String>, model: Option<String>) -> Result<Option<Self>, LlmError> {
        Self::from_env(LLM_URL_VAR, LLM_MODEL_VAR, url, model)
    }

    fn from_env(
        url_var: &'static str,
        model_var: &'static str,
        url: Option<String>,
        model: Option<String>,
    ) -> Result<Option<Self>, LlmError> {
        let var = |name| std::env::var(name).ok().filter(|v: &String| !v.trim().is_empty());
        match (url.or_else(|| var(url_var)), model.or_else(|| var(model_var))) {
            (None, None) => Ok(None),
            (Some(_), None) => Err(LlmError::Incomplete { var: url_var, missing: model_var }),
            (None, Some(_)) => Err(LlmError::Incomplete { var: model_var, missing: url_var }),
            (Some(url), Some(model)) => {
                Ok(Some(Endpoint::new(url, model, var(API_KEY_VAR).or_else(|| var("OPENAI_API_KEY")))))
            }
        }
    }

    fn client(&self) -> Client<OpenAIConfig> {
        let mut config = OpenAIConfig::new().with_api_base(&self.base_url);
        // Local servers want no key; async-openai would otherwise send OPENAI_API_KEY's value.
        config = config.with_api_key(self.api_key.clone().unwrap_or_default());
        let http = reqwest::Client::builder().timeout(TIMEOUT).build().unwrap_or_default();
        Client::with_config(config).with_http_client(http)
    }
}

/// Whether a failed request is worth repeating: the connection, not the request, failed.
fn transient(e: &OpenAIError) -> bool {
    matches!(e, OpenAIError::Reqwest(r) if r.is_connect() || r.is_timeout() || r.status().is_some_and(|s| s.is_server_error() || s.as_u16() == 429))
}

/// The APIs culprit calls.
#[derive(Debug, Clone, Copy)]
enum Api {
    Embeddings,
    Chat,
}

/// Posts one request, retrying transient failures; the response as JSON.
async fn post(
    endpoint: &Endpoint,
    client: &Client<OpenAIConfig>,
    api: Api,
    request: &serde_json::Value,
) -> Result<serde_json::Value, LlmError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let sent = match api {
            Api::Embeddings => client.embeddings().create_byot(request.clone()).await,
            Api::Chat => client.chat().create_byot(request.clone()).await,
        };
        match sent {
            Ok(r) => return Ok(r),
            Err(e) if attempt < ATTEMPTS && transient(&e) => {
                tracing::warn!(attempt, ?api, error = %e, "request failed; retrying");
                tokio::time::sleep(Duration::from_millis(250 << (attempt - 1))).await;
            }
            Err(source) => return Err(LlmError::Request { url: endpoint.base_url.clone(), source: Box::new(source) }),
        }
    }
}

/// One embedding per text, in order.
pub async fn embed(endpoint: &Endpoint, texts: &[String]) -> Result<Vec<Vec<f32>>, LlmError> {
    let span = tracing::info_span!("embeddings", gen_ai.request.model = %endpoint.model, server.address = %endpoint.base_url, inputs = texts.len());
    embed_batches(endpoint, texts).instrument(span).await
}

async fn embed_batches(endpoint: &Endpoint, texts: &[String]) -> Result<Vec<Vec<f32>>, LlmError> {
    let client = endpoint.client();
    let texts: Vec<String> = texts.iter().map(|t| crate::redact::guard().apply(t)).collect();
    let mut out = Vec::with_capacity(texts.len());
    for batch in texts.chunks(BATCH) {
        let request = serde_json::json!({ "model": endpoint.model, "input": batch });
        // The response is read as JSON, not as async-openai's typed response: servers without
        // pooling (llama.cpp's by default) return one vector per token, which is mean-pooled here.
        let response = post(endpoint, &client, Api::Embeddings, &request).await?;
        let bad = |message: String| LlmError::Response { url: endpoint.base_url.clone(), message };
        let data = response
            .get("data")
            .and_then(|d| d.as_array())
            .ok_or_else(|| bad(format!("no `data` array in the response: {}", clip(&response))))?;
        if data.len() != batch.len() {
            return Err(bad(format!("{} embeddings returned for {} inputs", data.len(), batch.len())));
        }
        let mut vectors: Vec<(u64, Vec<f32>)> = Vec::with_capacity(data.len());
        for (i, item) in data.iter().enumerate() {
            let index = item.get("index").and_then(|x| x.as_u64()).unwrap_or(i as u64);
            let v = item
                .get("embedding")
                .and_then(pooled)
                .ok_or_else(|| bad(format!("`data[{i}].embedding` is not a vector of numbers (nor one per token)")))?;
            if v.is_empty() || v.iter().any(|x| !x.is_finite()) {
                return Err(bad(format!("`data[{i}].embedding` is empty or not finite")));
            }
            vectors.push((index, v));
        }
        vectors.sort_by_key(|(index, _)| *index);
        out.extend(vectors.into_iter().map(|(_, v)| v));
    }
    Ok(out)
}

/// A vector from JSON: an array of numbers, or an array of per-token arrays (their mean).
fn pooled(v: &serde_json::Value) -> Option<Vec<f32>> {
    let numbers = |a: &serde_json::Value| {
        a.as_array()?.iter().map(|x| x.as_f64().map(|x| x as f32)).collect::<Option<Vec<f32>>>()
    };
    if let Some(v) = numbers(v) {
        return Some(v);
    }
    let tokens = v.as_array()?.iter().map(numbers).collect::<Option<Vec<Vec<f32>>>>()?;
    let dim = tokens.first()?.len();
    if tokens.iter().any(|t| t.len() != dim) {
        return None;
    }
    let mut mean = vec![0.0f32; dim];
    for t in &tokens {
        mean.iter_mut().zip(t).for_each(|(m, x)| *m += x / tokens.len() as f32);
    }
    Some(mean)
}

/// One function call a model asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// The arguments as the model wrote them (JSON text, possibly invalid).
    pub arguments: String,
}

/// A model's reply to one chat turn.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatReply {
    pub content: Option<String>,
    pub tool_calls: Vec<ToolCall>,
    /// Prompt and completion tokens, as the server counted them (estimated when it did not).
    pub tokens: u64,
}

/// One `/chat/completions` turn. `request` is the OpenAI request body without `model`; transient
/// failures are retried like embeddings requests.
pub async fn chat(endpoint: &Endpoint, mut request: serde_json::Value) -> Result<ChatReply, LlmError> {
    let span = tracing::info_span!("chat", gen_ai.request.model = %endpoint.model, server.address = %endpoint.base_url);
    async move {
        request["model"] = serde_json::Value::String(endpoint.model.clone());
        // The last guard: whatever a caller forgot, no secret of the catalogue leaves for a model.
        if let Some(messages) = request.get_mut("messages").and_then(|m| m.as_array_mut()) {
            for m in messages {
                if let Some(content) = m.get_mut("content") {
                    *content = crate::redact::guard().apply_json(content);
                }
            }
        }
        let response = post(endpoint, &endpoint.client(), Api::Chat, &request).await?;
        let bad = |message: String| LlmError::Response { url: endpoint.base_url.clone(), message };
        let message = response
            .pointer("/choices/0/message")
            .ok_or_else(|| bad(format!("no `choices[0].message` in the response: {}", clip(&response))))?;
        let content =
            message.get("content").and_then(|c| c.as_str()).map(str::to_string).filter(|c| !c.trim().is_empty());
        let tool_calls = message
            .get("tool_calls")
            .and_then(|t| t.as_array())
            .map(|calls| {
                calls
                    .iter()
                    .enumerate()
                    .filter_map(|(i, c)| {
                        let f = c.get("function")?;
                        Some(ToolCall {
                            id: c
                                .get("id")
                                .and_then(|x| x.as_str())
                                .map_or_else(|| format!("call_{i}"), str::to_string),
                            name: f.get("name")?.as_str()?.to_string(),
                            arguments: match f.get("arguments") {
                                Some(serde_json::Value::String(s)) => s.clone(),
                                Some(v) => v.to_string(),
                                None => String::new(),
                            },
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        let tokens = response
            .pointer("/usage/total_tokens")
            .and_then(|t| t.as_u64())
            .unwrap_or_else(|| (request.to_string().len() / 4) as u64);
        Ok(ChatReply { content, tool_calls, tokens })
    }
    .instrument(span)
    .await
}

/// The start of a JSON value, for error messages.
fn clip(v: &serde_json::Value) -> String {
    let s = v.to_string();
    match s.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooled_reads_vectors_and_averages_token_vectors() {
        assert_eq!(pooled(&serde_json::json!([1.0, 2.0])), Some(vec![1.0, 2.0]));
        assert_eq!(pooled(&serde_json::json!([[1.0, 2.0], [3.0, 4.0]])), Some(vec![2.0, 3.0]));
        assert_eq!(pooled(&serde_json::json!([[1.0], [3.0, 4.0]])), None);
        assert_eq!(pooled(&serde_json::json!("x")), None);
        assert_eq!(pooled(&serde_json::json!([])), Some(vec![]));
    }

    #[test]
    fn endpoint_trims_the_url_and_hides_the_key() {
        let e = Endpoint::new("http://h/v1/", "m", Some("sk-secret".into()));
        assert_eq!(e.base_url, "http://h/v1");
        assert!(!format!("{e:?}").contains("sk-secret"));
    }
}
