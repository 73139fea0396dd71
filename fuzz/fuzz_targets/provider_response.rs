//! Model-provider responses: error bodies the worker reads a status from, and the
//! OpenAI-compatible chat, stream-chunk and embedding bodies it deserializes (with the
//! same async-openai types the worker uses).
#![no_main]
use libfuzzer_sys::fuzz_target;

use async_openai::types::chat::{CreateChatCompletionResponse, CreateChatCompletionStreamResponse};
use async_openai::types::embeddings::CreateEmbeddingResponse;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = chorus_inference_workers::call::status_from_body(&text);
    let _ = serde_json::from_slice::<CreateChatCompletionResponse>(data);
    let _ = serde_json::from_slice::<CreateChatCompletionStreamResponse>(data);
    let _ = serde_json::from_slice::<CreateEmbeddingResponse>(data);
});
